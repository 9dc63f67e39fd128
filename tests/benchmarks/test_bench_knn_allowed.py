"""The k-NN-among-allowed-rows benchmark runs end to end at a small size (it
checks the two ways answer the same and prints its table)."""

from __future__ import annotations

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "benchmarks"))

import bench_knn_allowed  # noqa: E402


def test_the_table_has_a_row_per_size_shards_and_rows_left_out(tmp_path, capsys):
    argv = ["--n", "20k", "--shards", "1,2", "--left-out", "0,5000", "--repeats", "1"]
    assert bench_knn_allowed.main([*argv, "--work-dir", str(tmp_path)]) == 0
    rows = [
        line
        for line in capsys.readouterr().out.splitlines()
        if line.startswith("| 20,000")
    ]
    assert [row.split(" | ")[1:3] for row in rows] == [
        ["1", "0"],
        ["1", "5,000"],
        ["2", "0"],
        ["2", "5,000"],
    ]
