"""register_similarity_backend: in this process always, in the brain config file
only when asked, idempotently, keeping the file's other settings."""

from __future__ import annotations

import json

import fiftyone.brain as fob
from fiftyone.brain.config import BrainConfig

from fiftyone_clipbranches.similarity import register_similarity_backend
from fiftyone_clipbranches.similarity.registration import CONFIG_CLS


def test_registers_in_process_and_persists_only_when_asked(tmp_path, monkeypatch):
    path = tmp_path / "brain_config.json"
    monkeypatch.setenv("FIFTYONE_BRAIN_CONFIG_PATH", str(path))
    assert register_similarity_backend() is None and not path.exists()
    assert fob.brain_config.similarity_backends["clipbranches"] == {
        "config_cls": CONFIG_CLS
    }

    path.write_text(json.dumps({"default_similarity_backend": "sklearn"}))
    assert register_similarity_backend(persist=True) == path
    written = json.loads(path.read_text())
    assert written["default_similarity_backend"] == "sklearn"
    assert BrainConfig.from_json(str(path)).similarity_backends["clipbranches"] == {
        "config_cls": CONFIG_CLS
    }
    before = path.stat().st_mtime_ns
    assert register_similarity_backend(persist=True) is None
    assert path.stat().st_mtime_ns == before
