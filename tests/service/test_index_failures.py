"""How the service remembers that an index's last query found it unavailable:
queries end out of order, and only a query that started after a failure clears it."""

from __future__ import annotations

import pytest

from fiftyone_clipbranches import sdk
from fiftyone_clipbranches.service.backend import _Index
from fiftyone_clipbranches.service.errors import ApiError


def _fail(index: _Index, code: str = "index_unavailable") -> None:
    with pytest.raises(ApiError), index.watched("d"):
        raise ApiError(503, code, "shard 1 of 2 is gone")


def test_a_failure_is_listed_until_a_later_query_succeeds():
    index = _Index("clip", "/nowhere", info={"key": "clip"})
    assert index.serving
    _fail(index)
    assert not index.serving and index.failure == "shard 1 of 2 is gone"
    with index.watched("d"):
        pass
    assert index.serving and index.failure is None


def test_a_query_that_started_before_the_failure_does_not_clear_it():
    index = _Index("clip", "/nowhere")
    earlier = index.watched("d")
    earlier.__enter__()
    _fail(index)
    earlier.__exit__(None, None, None)  # succeeded on files it had opened before
    assert index.failure == "shard 1 of 2 is gone"


def test_a_failure_older_than_a_success_is_not_recorded():
    index = _Index("clip", "/nowhere")
    earlier = index.watched("d")
    earlier.__enter__()
    with index.watched("d"):
        pass  # started later, restored files
    error = ApiError(503, "index_unavailable", "gone")
    assert earlier.__exit__(ApiError, error, None) is False  # the error goes on
    assert index.serving


def test_other_errors_leave_the_index_served():
    index = _Index("clip", "/nowhere")
    for code in ("timeout", "worker_crashed", "no_positives"):
        _fail(index, code)
    assert index.serving


def test_a_cluster_that_lost_the_shards_is_unavailable_not_a_bad_request():
    """The shards' workers gone (their cluster stopped): 503, as a damaged index,
    not the 422 of a request to change."""
    from fiftyone_clipbranches.sdk.errors import ShardsUnavailableError
    from fiftyone_clipbranches.service.backend import _sdk_errors

    with pytest.raises(ApiError) as err, _sdk_errors():
        raise ShardsUnavailableError("the Ray actors ... are gone")
    assert (err.value.status, err.value.code) == (503, "index_unavailable")


@pytest.mark.parametrize(
    "error, code",
    [
        ("IndexFilesMissingError", "index_unavailable"),
        ("CheckpointUnavailableError", "model_unavailable"),
        ("StaleIndexError", "stale_index"),
        ("UnknownModelError", "unprocessable"),
        ("IndexBusyError", "busy"),  # another process builds or saves: for now
    ],
)
def test_the_servers_missing_files_are_503s_the_requests_faults_422s(error, code):
    """Index files or a CLIP checkpoint gone from the server answered 422 (the
    request's fault); what the request asks that the index cannot do stays 422."""
    from fiftyone_clipbranches import sdk
    from fiftyone_clipbranches.service.backend import _sdk_errors

    with pytest.raises(ApiError) as err, _sdk_errors():
        raise getattr(sdk, error)("why")
    status = 422 if code in ("stale_index", "unprocessable") else 503
    assert (err.value.status, err.value.code, err.value.message) == (
        status,
        code,
        "why",
    )


def test_the_dataset_listing_says_not_ready_while_indexes_load():
    """It answered an empty list, which a client reads as "nothing served"."""
    from fiftyone_clipbranches.service.backend import SdkBackend

    backend = SdkBackend([])  # load() not run yet
    with pytest.raises(ApiError) as err:
        backend.list_datasets()
    assert (err.value.status, err.value.code) == (503, "not_ready")
    backend.load()
    assert backend.list_datasets() == []


def test_a_database_that_does_not_answer_or_is_full_is_not_a_bare_500():
    """pymongo's errors reached the client as 500 internal_error."""
    from pymongo.errors import OperationFailure, ServerSelectionTimeoutError, WriteError

    from fiftyone_clipbranches.service.backend import _sdk_errors

    with pytest.raises(ApiError) as err, _sdk_errors():
        raise ServerSelectionTimeoutError("127.0.0.1:27017: [Errno 111] refused")
    assert (err.value.status, err.value.code) == (503, "database_unavailable")
    assert err.value.retry_after_s == 2 and "does not answer" in err.value.message
    # MongoDB's OutOfDiskSpace, and the system's words under another code
    for code, words in ((14031, "Out of disk space"), (8, "No space left on device")):
        with pytest.raises(ApiError) as err, _sdk_errors():
            raise WriteError(words, code, {"errmsg": words, "code": code})
        assert (err.value.status, err.value.code) == (507, "database_full"), code
    # a bug stays a 500, PathNotViable (28) included
    for code, words in ((2, "unknown operator: $frob"), (28, "Cannot create field")):
        with pytest.raises(OperationFailure), _sdk_errors():
            raise OperationFailure(words, code)


def test_a_probe_that_cannot_check_the_indexes_says_so_once(monkeypatch, caplog):
    """With every index failed, a probe checks the database: an error there that
    is no API error was a 500 from /v1/ready, logged at every probe."""
    from fiftyone_clipbranches.service.backend import SdkBackend, _Dataset

    backend = SdkBackend([])
    backend.load()
    entry = _Dataset("d", None, "0" * 24)
    entry.indexes = {"clip": _Index("clip", "/nowhere", error="bad manifest")}
    backend._datasets = {"d": entry}

    def broken(entry, force=False):
        raise RuntimeError("cannot read the runs of 'd'")

    monkeypatch.setattr(backend, "_refresh", broken)
    with caplog.at_level("WARNING", logger="fiftyone_clipbranches.service.backend"):
        for _ in range(3):
            why = backend.not_ready_because()
            assert why == (
                "the served indexes could not be checked: cannot read the runs of 'd'"
            )
    assert len(caplog.records) == 1
    monkeypatch.setattr(backend, "_refresh", lambda entry, force=False: None)
    assert backend.not_ready_because().startswith("none of the 1 indexes found")
    assert "index 'clip' of dataset 'd': bad manifest" in backend.not_ready_because()


def test_an_index_whose_run_could_not_be_read_is_loaded_once_it_can_be(
    make_user_index, monkeypatch, caplog
):
    """An index whose directory could not be found out at the start (a permission
    on its folder) was never loaded again after the fix, and its warning told the
    operator to delete and rebuild an index with nothing wrong with it."""
    from fiftyone_clipbranches.service import backend as served
    from fiftyone_clipbranches.service.backend import SdkBackend

    ds = make_user_index(n_per_class=4, name="svc-run-unreadable")
    index_info = sdk.index_info
    denied = [True]

    def guarded(*args, **kwargs):
        if denied[0]:
            raise PermissionError(13, "Permission denied", "/srv/indexes/x")
        return index_info(*args, **kwargs)

    monkeypatch.setattr(sdk, "index_info", guarded)
    monkeypatch.setattr(served, "RETRY_FAILED_LOAD_S", 0.0)
    backend = SdkBackend([ds.name])
    with caplog.at_level("WARNING", logger="fiftyone_clipbranches.service.backend"):
        backend.load()
    (said,) = [r.getMessage() for r in caplog.records if "is not served" in r.message]
    assert "Permission denied" in said and "mend what the error says" in said
    assert "build it again" not in said and "delete" not in said
    assert backend.not_ready_because().startswith("none of the 1 indexes found")
    denied[0] = False  # the permission mended
    assert backend.not_ready_because() is None
    assert [ix["key"] for ix in backend.list_datasets()[0]["indexes"]] == ["clip"]
