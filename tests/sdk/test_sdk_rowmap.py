import numpy as np
import pytest

from fiftyone_clipbranches.sdk.rowmap import SampleRowMap


def _ids(n, seed=0):
    rng = np.random.default_rng(seed)
    return [f"{v:024x}" for v in rng.choice(2**62, size=n, replace=False)]


def test_rows_of_finds_every_id_and_flags_unknown_ones():
    ids = _ids(500)
    rowmap = SampleRowMap(ids)
    query = ids[::7] + ["f" * 24, "0" * 24]
    rows, found = rowmap.rows_of(query)
    assert found.tolist() == [True] * len(ids[::7]) + [False, False]
    assert rows[found].tolist() == list(range(0, 500, 7))
    assert rowmap.ids_of(rows[found]) == ids[::7]


def test_save_load_round_trip(tmp_path):
    ids = _ids(50, seed=1)
    SampleRowMap(ids).save(tmp_path / "ids.npy")
    loaded = SampleRowMap.load(tmp_path / "ids.npy")
    assert loaded.ids_of(np.arange(50)) == ids
    assert loaded.contains(ids[:3]).all()


def test_duplicate_ids_are_rejected():
    ids = _ids(5)
    with pytest.raises(ValueError, match="unique"):
        SampleRowMap(ids + ids[:1])


def test_empty_map_finds_nothing():
    rows, found = SampleRowMap([]).rows_of(["a" * 24])
    assert not found.any() and rows.shape == (1,)


@pytest.mark.parametrize(
    "bad",
    [
        "a" * 24 + "-suffix",  # was cut to its first 24 characters and accepted
        "a" * 23,
        "é" * 24,  # was a raw UnicodeEncodeError
        "g" * 24,
        "ab cd" + "e" * 19,
        12345,
    ],
)
def test_ids_that_are_not_sample_ids_are_refused_by_name(bad):
    from fiftyone_clipbranches.sdk.errors import ClipBranchesError, SampleIdsError

    ids = _ids(20)
    rowmap = SampleRowMap(ids)
    with pytest.raises(SampleIdsError, match="24 hexadecimal digits") as err:
        rowmap.rows_of(ids[:3] + [bad])
    assert repr(bad) in str(err.value)
    assert isinstance(err.value, ClipBranchesError)
    with pytest.raises(SampleIdsError):
        SampleRowMap(ids + [bad])


def test_checking_a_million_ids_is_fast():
    import time

    from fiftyone_clipbranches.sdk.rowmap import check_sample_ids

    ids = _ids(1_000_000, seed=3)
    t0 = time.perf_counter()
    assert check_sample_ids(ids) == ids
    assert time.perf_counter() - t0 < 1.0


def test_ids_joined_in_one_string_are_told_to_be_given_one_by_one():
    from fiftyone_clipbranches.sdk.errors import SampleIdsError

    ids = _ids(3)
    rowmap = SampleRowMap(ids)
    with pytest.raises(SampleIdsError, match="give one id per item") as err:
        rowmap.rows_of([f"{ids[0]},{ids[1]}"])
    assert "repeat the option for each id" in str(err.value)
    assert err.value.ids == [f"{ids[0]},{ids[1]}"]  # the malformed ones, as given
    with pytest.raises(SampleIdsError) as err:
        rowmap.rows_of([ids[0], "nope", ids[1], 7])
    assert err.value.ids == ["nope", 7] and "'nope'" in str(err.value)
    with pytest.raises(SampleIdsError, match="check how these ids were produced"):
        rowmap.rows_of(["not-an-id,either"])
