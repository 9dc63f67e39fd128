"""The service follows the database: what another process deletes answers 404, an
index updated elsewhere is served from its new directory (the old one let go), and
one broken index is reported and skipped while the others are served.

The service runs as ``clipbranches serve`` in a subprocess over indexes built the
user's way (``make_user_index``); the changes are made from this process.
"""

from __future__ import annotations

import json
import os
import signal
import time
import urllib.error
import urllib.request
from pathlib import Path

import psutil
import pytest
from fiftyone.core.odm import get_db_conn
from service_helpers import Http, worker_pids
from service_process import running_service
from user_path import TINY_CLIP_NAME

from fiftyone_clipbranches import sdk
from fiftyone_clipbranches.sdk.claims import CLAIMS_COLLECTION
from fiftyone_clipbranches.sdk.processes import this_process
from fiftyone_clipbranches.service import Client, ServiceError

TOKEN = "state-changes-token-0123456789"


def _until(check, timeout: float = 10.0):
    """Call ``check`` until it returns a truthy value; return that value."""
    deadline = time.monotonic() + timeout
    while True:
        value = check()
        if value or time.monotonic() > deadline:
            return value
        time.sleep(0.2)


def _error(call) -> tuple[int, str, str]:
    try:
        call()
    except ServiceError as e:
        return e.status, e.code, e.message
    return 200, "", ""


def _ready(url: str, token: str | None = TOKEN) -> tuple[int, dict]:
    """``/v1/ready``'s status and body, asked with ``token`` (its reasons are
    said in full to a client carrying it)."""
    headers = {"Authorization": f"Bearer {token}"} if token else {}
    request = urllib.request.Request(f"{url}/v1/ready", headers=headers)
    try:
        with urllib.request.urlopen(request, timeout=10) as resp:
            return resp.status, json.loads(resp.read())
    except urllib.error.HTTPError as e:
        return e.code, json.loads(e.read())


def _past_start(url: str) -> tuple[int, dict] | None:
    """``/v1/ready``'s answer once the start is over: ready, or not ready because
    no index could be loaded; None before."""
    got = _ready(url)
    error = got[1].get("error", {})
    return got if got[0] == 200 or "none of" in error.get("message", "") else None


def _mapped_files(pid: int, directory: str) -> list[str]:
    maps = Path(f"/proc/{pid}/maps").read_text()
    return [line for line in maps.splitlines() if directory in line]


@pytest.fixture
def three_datasets(make_user_index, tiny_clip_checkpoint):
    """``kept`` (indexes ``clip`` and ``second``), ``doomed`` (index ``clip``) and
    ``broken`` (index ``clip`` whose manifest is garbage)."""
    from user_path import build_user_index

    kept = make_user_index(n_per_class=4, name="svc-state-kept")
    build_user_index(kept, tiny_clip_checkpoint, "second")
    doomed = make_user_index(n_per_class=4, name="svc-state-doomed")
    broken = make_user_index(n_per_class=4, name="svc-state-broken")
    manifest = Path(sdk.index_info(broken, "clip", check=False).index_dir)
    (manifest / "manifest.json").write_text("{ not json")
    for ds in (kept, doomed, broken):
        ds.persistent = True
    return kept, doomed, broken


def test_service_follows_deletions_updates_and_skips_a_broken_index(
    three_datasets, tiny_clip_checkpoint
):
    kept, doomed, broken = three_datasets
    args = [f"--dataset={ds.name}" for ds in three_datasets]
    with running_service([*args, "--compute-workers", "2"], TOKEN) as service:
        client = Client(service.url, TOKEN)
        pid = service.proc.pid

        # The broken index is named in a warning and answers a clear 503; the
        # service itself serves the others.
        _until(lambda: "svc-state-broken" in service.output())
        log = service.output()
        assert "index 'clip' of dataset 'svc-state-broken' is not served" in log
        (listed,) = [d for d in client.datasets() if d["name"] == broken.name]
        assert listed["indexes"] == []
        assert listed["unavailable_indexes"][0]["key"] == "clip"
        status, code, message = _error(
            lambda: client.search(broken.name, text="a cat", index_key="clip")
        )
        assert (status, code) == (503, "index_unavailable")
        assert "an index built again or updated without a restart" in message

        # A local CLIP checkpoint is named by its file, never by where it lies.
        described = json.dumps(client.index(kept.name, "clip"))
        assert tiny_clip_checkpoint.name in described
        assert str(tiny_clip_checkpoint.parent) not in described

        # Deleting an index elsewhere: 404, the other index still answers.
        ids = kept.take(3, seed=0).values("id")
        res = client.refine(kept.name, positives=ids, index_key="second")
        assert res["total"] > 0
        sdk.delete_index(kept, "second")
        assert _until(
            lambda: (
                _error(
                    lambda: client.refine(kept.name, positives=ids, index_key="second")
                )[:2]
                == (404, "index_not_found")
            )
        )
        assert client.search(kept.name, text="a cat", index_key="clip")["total"]
        # Built again by another live process (this test's parent): being built
        # and when to ask again, not gone; gone again when that build is
        claims = get_db_conn()[CLAIMS_COLLECTION]
        parent = psutil.Process(os.getppid())
        claim = {
            "_id": f"{kept._doc.id}:second", **this_process(), "pid": parent.pid,
            "pid_started": parent.create_time(), "work": "build",
            "since": time.time(),
        }  # fmt: skip
        claims.insert_one(claim)
        try:
            status, code, message = _error(
                lambda: client.refine(kept.name, positives=ids, index_key="second")
            )
            assert (status, code) == (503, "index_being_built")
            assert "is being built" in message and "try again" in message
            body = {"dataset": kept.name, "positives": ids, "index_key": "second"}
            status, headers, _ = Http(service.url, TOKEN)("POST", "/v1/refine", body)
            assert (status, headers["Retry-After"]) == (503, "5")
        finally:
            claims.delete_one({"_id": claim["_id"]})
        assert _error(
            lambda: client.refine(kept.name, positives=ids, index_key="second")
        )[:2] == (404, "index_not_found")

        # Updating an index elsewhere: served from its new directory, the old one
        # let go (no longer mapped by the service nor its compute workers).
        old_dir = str(sdk.index_info(kept, "clip", check=False).index_dir)
        family = [pid, *worker_pids(pid)]
        assert len(family) == 3
        assert all(_mapped_files(p, old_dir) for p in family)
        gone = kept.take(5, seed=1).values("id")
        kept.delete_samples(gone)
        sdk.update_index(kept, "clip", progress=False)
        n_now = len(kept)
        assert _until(lambda: client.index(kept.name, "clip")["n_samples"] == n_now)
        found = client.search(kept.name, text="a dog", k=1000, index_key="clip")
        served = {item["id"] for item in client.iter_items(found["result_id"])}
        assert served and not served & set(gone)

        def let_go() -> bool:  # a worker lets go at its next task: give it one
            client.search(kept.name, text="a dog", index_key="clip")
            return not any(_mapped_files(p, old_dir) for p in family)

        assert _until(let_go)

        # Deleting a dataset elsewhere: its info, queries, result pages and saves
        # answer 404, never 200 from memory or a 500.
        res = client.search(doomed.name, text="a ship", index_key="clip")
        doomed.delete()
        assert _until(
            lambda: (
                _error(lambda: client.dataset(doomed.name))[:2]
                == (404, "dataset_not_found")
            )
        )
        for call in (
            lambda: client.search(doomed.name, text="a ship", index_key="clip"),
            lambda: client.page(res["result_id"]),
            lambda: client.save_view(res["result_id"], "ships"),
        ):
            status, code, message = _error(call)
            assert (status, code) == (404, "dataset_not_found")
            assert "was deleted" in message
        assert doomed.name not in [d["name"] for d in client.datasets()]
        # another dataset made under that name since: the old result is not its
        again = kept.clone(doomed.name, persistent=True)
        assert _until(lambda: doomed.name in [d["name"] for d in client.datasets()])
        for call in (
            lambda: client.page(res["result_id"]),
            lambda: client.save_view(res["result_id"], "ships"),
        ):
            status, code, message = _error(call)
            assert (status, code) == (404, "result_not_found")
            assert "the dataset of that name now is another one" in message
        again.reload()
        assert not again.has_saved_view("ships")
        again.delete()
        assert client.health() == {"status": "ok"}
        assert service.proc.poll() is None


def test_saves_count_what_they_save_renames_are_named_deletions_are_404s(
    make_user_index,
):
    """A save counts the samples it saved; a dataset renamed elsewhere is named as
    such, not as deleted; a save into a dataset deleted meanwhile is a 404 at once,
    without waiting for the recheck interval."""
    ds = make_user_index(n_per_class=4, name="svc-state-save")
    ds.persistent = True
    args = [f"--dataset={ds.name}", "--compute-workers", "1"]
    with running_service(args, TOKEN) as service:
        client = Client(service.url, TOKEN)
        res = client.search(ds.name, text="a frog", k=12, index_key="clip")
        # one sample deleted since the result was made is not saved, nor counted
        first = next(client.iter_items(res["result_id"]))["id"]
        ds.delete_samples([first])
        saved = client.save_view(res["result_id"], "frogs")
        ds.reload()  # saved by the service's process
        assert saved["n_samples"] == 11 == len(ds.load_saved_view("frogs"))
        # the deleted sample as a label, or a query: named, as the SDK names it
        for call in (
            lambda: client.refine(ds.name, positives=[first], index_key="clip"),
            lambda: client.search(ds.name, sample_ids=[first], index_key="clip"),
        ):
            with pytest.raises(ServiceError) as err:
                call()
            assert err.value.code == "unknown_sample_ids"
            assert err.value.details["ids"] == [first]
            assert "deleted from dataset" in err.value.message

        # a sample added since the build is refused as the sdk refuses it
        import fiftyone as fo

        (added,) = ds.add_samples([fo.Sample(filepath=ds.first().filepath)])
        status, code, message = _error(
            lambda: client.refine(ds.name, positives=[added], index_key="clip")
        )
        assert (status, code) == (422, "stale_index")
        assert "added since it was built" in message and "update-index" in message
        with pytest.raises(ServiceError) as err:  # named, as unknown ids are
            client.search(ds.name, sample_ids=[added], index_key="clip")
        assert err.value.details == {"field": "sample_ids", "ids": [added]}
        # as a negative it is left out and counted, as the sdk does
        labelled = [i for i in ds.values("id") if i != added][:3]
        res = client.refine(
            ds.name, positives=labelled, negatives=[added], index_key="clip"
        )
        assert res["stats"]["n_unindexed_neg"] == 1 and res["stats"]["n_neg"] == 0
        # and a search says that one sample was not searched, as the CLI does
        found = client.search(ds.name, sample_ids=labelled[:1], k=3, index_key="clip")
        assert found["stats"]["n_unindexed"] == 1

        # renamed elsewhere: said so, not "deleted"; renamed back: served again
        def asked():
            return _error(
                lambda: client.search("svc-state-save", text="a", index_key="clip")
            )

        ds.name = "svc-state-save-2"
        status, code, message = _until(lambda: asked()[0] == 404 and asked())
        assert (status, code) == (404, "dataset_not_found")
        assert "renamed to 'svc-state-save-2'" in message and "restart" in message
        assert "was deleted" not in message
        ds.name = "svc-state-save"
        assert _until(lambda: asked()[0] == 200)
        assert "renamed to 'svc-state-save-2'" in service.output()

        ds.delete()
        status, code, _ = _error(lambda: client.save_view(res["result_id"], "f"))
        assert (status, code) == (404, "dataset_not_found")
        _until(lambda: "was deleted" in service.output(), timeout=2)
        assert "Traceback" not in service.output()


def test_verify_full_refuses_a_corrupted_index_and_serves_the_rest(
    make_user_index, tiny_clip_checkpoint
):
    """``--verify full`` re-hashes every file: a flipped byte in the codes, which
    a sampled check may miss, keeps that index out; the other is served."""
    ds = make_user_index(n_per_class=4, name="svc-state-verify")
    from user_path import build_user_index

    build_user_index(ds, tiny_clip_checkpoint, "second")
    ds.persistent = True
    index_dir = Path(sdk.index_info(ds, "second", check=False).index_dir)
    manifest = json.loads((index_dir / "manifest.json").read_text())
    assert manifest  # the files table lists what full verification re-hashes
    victim = max(
        (p for p in (index_dir / "index").rglob("*") if p.is_file()),
        key=lambda p: p.stat().st_size,
    )
    data = bytearray(victim.read_bytes())
    data[len(data) // 2 + 7] ^= 0xFF
    victim.write_bytes(bytes(data))
    args = [f"--dataset={ds.name}", "--verify", "full", "--compute-workers", "1"]
    with running_service(args, TOKEN) as svc:
        client = Client(svc.url, TOKEN)
        (listed,) = client.datasets()
        assert [ix["key"] for ix in listed["indexes"]] == ["clip"]
        assert [ix["key"] for ix in listed["unavailable_indexes"]] == ["second"]
        status, code, message = _error(lambda: client.index(ds.name, "second"))
        assert (status, code) == (503, "index_unavailable")
        assert message.count("overwrite=True") == 1  # the way out, said once
        assert "a directory restored in place, after a restart" in message
        assert client.search(ds.name, text="a truck", index_key="clip")["total"]


def test_an_index_whose_queries_fail_is_listed_unavailable_until_one_succeeds(
    make_user_index,
):
    """Files damaged after the start are found by a compute worker that restarts:
    its query answers 503, the listing says why until a query succeeds again."""
    import os
    import signal

    ds = make_user_index(n_per_class=4, name="svc-state-failing")
    ds.persistent = True
    index_dir = Path(sdk.index_info(ds, "clip", check=False).index_dir)
    victim = sorted((index_dir / "index").rglob("node_lo.npy"))[-1]
    kept = victim.with_name("kept.bin")
    with running_service([f"--dataset={ds.name}", "--compute-workers", "1"], TOKEN) as (
        service
    ):
        client = Client(service.url, TOKEN)
        pos = ds.take(3, seed=0).values("id")
        assert client.refine(ds.name, positives=pos, index_key="clip")["total"] > 0
        (before,) = worker_pids(service.proc.pid)
        os.chmod(victim.parent, 0o755)
        os.replace(victim, kept)  # the worker's open files keep the old inode
        garbage = victim.with_name("garbage.bin")
        garbage.write_bytes(b"garbage")
        os.replace(garbage, victim)
        os.kill(before, signal.SIGKILL)  # the next request starts a new worker

        def answer():  # the dying worker's request, and those until a new one, retry
            got = _error(
                lambda: client.refine(ds.name, positives=pos, index_key="clip")
            )
            return None if got[1] in ("worker_crashed", "not_ready") else got

        status, code, message = _until(answer, timeout=60)
        assert (status, code) == (503, "index_unavailable")
        assert "node_lo.npy" in message
        (listed,) = [d for d in client.datasets() if d["name"] == ds.name]
        assert listed["indexes"] == []
        (failing,) = listed["unavailable_indexes"]
        assert failing["key"] == "clip"
        assert failing["error"].startswith("its last query failed")
        assert "node_lo.npy" in failing["error"]
        status, code, _ = _error(lambda: client.index(ds.name, "clip"))
        assert (status, code) == (503, "index_unavailable")
        logged = f"index 'clip' of dataset {ds.name!r} is unavailable: "
        assert service.output().count(logged) == 1
        # still ready: queries must keep reaching it to find it restored
        status, body = _ready(service.url)
        assert (status, body["status"], body["indexes"]) == (200, "ready", 0)

        os.replace(kept, victim)  # restored: served again without a restart
        assert client.refine(ds.name, positives=pos, index_key="clip")["total"] > 0
        (listed,) = [d for d in client.datasets() if d["name"] == ds.name]
        assert [ix["key"] for ix in listed["indexes"]] == ["clip"]
        assert listed["unavailable_indexes"] == []
        assert client.index(ds.name, "clip")["n_samples"] == len(ds)


def test_not_ready_while_no_index_found_could_be_loaded(
    make_user_index, tiny_clip_checkpoint
):
    """Every index failing its check at start answered /v1/ready 200, so a load
    balancer sent every request to a service that could answer none; built again,
    the index is loaded on the next probe (no request reaches a service not ready)."""
    from user_path import build_user_index

    ds = make_user_index(n_per_class=4, name="svc-none-loaded")
    ds.persistent = True
    index_dir = Path(sdk.index_info(ds, "clip", check=False).index_dir)
    (index_dir / "manifest.json").write_text("{ not json")
    with running_service(
        [f"--dataset={ds.name}", "--compute-workers", "1"], TOKEN, wait_ready=False
    ) as service:
        status, body = _until(lambda: _past_start(service.url), timeout=120)
        assert status == 503 and body["error"]["code"] == "not_ready"
        message = body["error"]["message"]
        assert "none of the 1 indexes found could be loaded" in message
        assert f"index 'clip' of dataset {ds.name!r}" in message
        assert str(index_dir) not in message
        # a probe without the token learns that it is not ready, not what is there
        status, body = _ready(service.url, token=None)
        public = body["error"]["message"]
        assert status == 503 and public == "none of the 1 indexes found could be loaded"

        sdk.delete_index(ds, "clip")
        build_user_index(ds, tiny_clip_checkpoint, "clip")
        assert _until(lambda: _ready(service.url)[0] == 200, timeout=30)
        assert _ready(service.url)[1]["indexes"] == 1
        pos = ds.take(3, seed=0).values("id")
        client = Client(service.url, TOKEN)
        with pytest.raises(ServiceError, match='send "index_key": "clip"'):
            client.refine(ds.name, positives=pos, index_key="clipbranches")
        # a request naming no index is answered from the dataset's only one
        assert client.refine(ds.name, positives=pos)["index_key"] == "clip"
        body = {"dataset": ds.name, "positives": pos}
        status, _, answer = Http(service.url, TOKEN)("POST", "/v1/refine", body)
        assert status == 200
        assert answer["index_key"] == "clip" and answer["total"] > 0
        assert "POST /v1/refine" not in service.output()  # no --access-log
        assert client.refine(ds.name, positives=pos, index_key="clip")["total"] > 0


def test_an_index_restored_in_place_makes_the_service_ready(make_user_index):
    """A service whose every index failed its check stayed not ready after the
    directory was restored from a backup: no request reached it to find it."""
    ds = make_user_index(n_per_class=4, name="svc-none-restored")
    ds.persistent = True
    manifest = Path(sdk.index_info(ds, "clip", check=False).index_dir) / "manifest.json"
    kept = manifest.read_bytes()
    manifest.write_text("{ not json")
    with running_service(
        [f"--dataset={ds.name}", "--compute-workers", "1"], TOKEN, wait_ready=False
    ) as service:
        assert _until(lambda: _past_start(service.url), timeout=120)[0] == 503
        manifest.write_bytes(kept)  # restored in place
        assert _until(lambda: _ready(service.url)[0] == 200, timeout=60)
        pos = ds.take(3, seed=0).values("id")
        client = Client(service.url, TOKEN)
        assert client.refine(ds.name, positives=pos, index_key="clip")["total"] > 0
        assert service.output().count("is not served") == 1  # retried quietly


def test_a_served_dataset_given_its_first_index_is_searched_at_once(
    cifar_dir, tiny_clip_checkpoint
):
    """A dataset served before it had an index: once one is built, every compute
    worker answers with it (a worker's copy of the dataset from its start knew no
    index and said 404)."""
    from user_path import build_user_index, images_dataset

    ds = images_dataset(cifar_dir, 4, name="svc-state-first-index")
    ds.persistent = True
    try:
        args = [f"--dataset={ds.name}", "--compute-workers", "2"]
        with running_service(args, TOKEN) as service:
            client = Client(service.url, TOKEN)
            status, code, said = _error(lambda: client.search(ds.name, text="a cat"))
            assert (status, code) == (404, "index_not_found")
            assert f"it has none; build one (clipbranches build-index {ds.name}" in said
            assert f"dataset '{ds.name}' has no clipbranches index yet" in (
                service.output()
            )
            build_user_index(ds, tiny_clip_checkpoint, "clip")
            assert _until(lambda: client.dataset(ds.name)["indexes"])
            for _ in range(4):  # both workers, twice
                found = client.search(ds.name, text="a cat", index_key="clip", k=5)
                assert found["total"] == 5
    finally:
        ds.delete()


def test_an_index_whose_files_are_gone_is_unavailable_not_a_bad_request(
    make_user_index,
):
    """Its folder moved away while served: the service answered 422 stale_index
    (the request's fault), kept listing the index, and logged nothing."""
    ds = make_user_index(n_per_class=4, name="svc-state-moved")
    ds.persistent = True
    index_dir = Path(sdk.index_info(ds, "clip", check=False).index_dir)
    away = index_dir.with_name(index_dir.name + "-away")
    args = [f"--dataset={ds.name}", "--compute-workers", "1"]
    with running_service(args, TOKEN) as service:
        client = Client(service.url, TOKEN)
        pos = ds.take(3, seed=0).values("id")
        assert client.refine(ds.name, positives=pos, index_key="clip")["total"] > 0
        (worker,) = worker_pids(service.proc.pid)
        os.replace(index_dir, away)
        os.kill(worker, signal.SIGKILL)  # its replacement reads the files again
        try:

            def answer():  # the dying worker's request, and those until a new one, retry
                got = _error(
                    lambda: client.refine(ds.name, positives=pos, index_key="clip")
                )
                return None if got[1] in ("worker_crashed", "not_ready") else got

            status, code, message = _until(answer, timeout=30) or (200, "", "")
            assert (status, code) == (503, "index_unavailable")
            assert "index files are missing" in message
            (listed,) = [d for d in client.datasets() if d["name"] == ds.name]
            assert [ix["key"] for ix in listed["unavailable_indexes"]] == ["clip"]
            # clients are not told where the server keeps its files; its log is
            where = str(index_dir.parent)
            assert where not in message and ".../" in message
            assert where not in json.dumps(listed)
            assert _until(
                lambda: (
                    f"index 'clip' of dataset {ds.name!r} is unavailable"
                    in service.output()
                )
            )
            assert where in service.output()
        finally:
            os.replace(away, index_dir)  # back: served again without a restart
        assert client.refine(ds.name, positives=pos, index_key="clip")["total"] > 0
        (listed,) = [d for d in client.datasets() if d["name"] == ds.name]
        assert listed["unavailable_indexes"] == []


def test_the_result_store_is_sized_from_the_command_line(make_user_index):
    """max_results and result_ttl_s could be set from Python only: a team paging
    results lost them after 64 searches of everyone's."""
    ds = make_user_index(n_per_class=4, name="svc-state-store")
    ds.persistent = True
    args = [f"--dataset={ds.name}", "--max-results", "2", "--result-ttl", "600"]
    args.append("--access-log")  # a line per request, for the operator
    args += ["--trusted-proxy", "127.0.0.1"]
    with running_service(args, TOKEN) as service:
        client = Client(f"{service.url}/v1/", TOKEN)  # a URL copied from a request
        first, *later = [
            client.search(ds.name, sample_ids=[sid], k=3, index_key="clip")
            for sid in ds.take(3, seed=1).values("id")
        ]
        for result in later:
            assert len(client.page(result["result_id"])["items"]) == 3
        status, code, _ = _error(lambda: client.page(first["result_id"]))
        assert (status, code) == (404, "result_not_found")
        # the operator sees it: counted in /v1/ready, and said in the log
        held = client.ready()["results"]
        assert (held["held"], held["max_results"], held["dropped_for_room"]) == (
            2,
            2,
            1,
        )
        assert "raise --max-results" in service.output()
        # a path decoding to a line break and a terminal escape stays one line
        forged = "/v1/results/x%0A2026-12-05%20INFO%20forged%1B%5B2J"
        assert Http(service.url, TOKEN)("GET", forged)[0] == 400  # no result id
        escaped = "GET /v1/results/x%0A2026-12-05%20INFO%20forged%1B%5B2J 400"
        assert _until(lambda: escaped in service.output(), timeout=10)  # flushed
        logged = service.output()
        page = f"GET /v1/results/{first['result_id']} 404 "
        assert page in logged and "POST /v1/search 200 " in logged
        assert "\n2026-12-05 INFO forged" not in logged and "\x1b" not in logged
        # the client: behind the --trusted-proxy, the one its header names
        assert f"127.0.0.1 {page}" in logged
        proxied = {"X-Forwarded-For": "203.0.113.7"}
        assert Http(service.url, TOKEN)("GET", "/v1/ready", headers=proxied)[0] == 200
        via = "access: 203.0.113.7 GET /v1/ready 200"
        assert _until(lambda: via in service.output(), timeout=10)


def test_a_gone_checkpoint_is_warned_at_start_and_text_search_is_503(
    make_user_index, tmp_path
):
    """Start-up said nothing, and text search answered 422 (the request's fault)."""
    import shutil

    ds = make_user_index(n_per_class=4, name="svc-state-ckpt")
    ds.persistent = True
    recorded = sdk.index_info(ds, "clip", check=False).clip_model["pretrained"]
    moved = tmp_path / "moved.pt"
    shutil.copyfile(recorded, moved)
    config = Path(recorded).with_name(f"{TINY_CLIP_NAME}.json")
    shutil.copyfile(config, tmp_path / config.name)  # the architecture travels too
    sdk.relocate_checkpoint(ds, str(moved), index_key="clip")
    moved.unlink()  # gone from where the index says it is
    with running_service([f"--dataset={ds.name}"], TOKEN) as service:
        assert _until(lambda: "which is not there any more" in service.output())
        client = Client(service.url, TOKEN)
        status, code, message = _error(
            lambda: client.search(ds.name, "a cat", index_key="clip")
        )
        assert (status, code) == (503, "model_unavailable")
        assert "relocate-checkpoint" in message
        # searches by sample still work
        found = client.search(ds.name, sample_ids=ds.values("id")[:1], index_key="clip")
        assert found["total"] > 0
        # the listing says so (it said supports_text: true); once the index is
        # told where the file is now (while the service runs), it is again
        index = client.index(ds.name, "clip")
        assert index["supports_text"] is False
        assert "checkpoint file" in index["text_search_unavailable"]
        sdk.relocate_checkpoint(ds, str(recorded), index_key="clip")
        assert _until(
            lambda: client.index(ds.name, "clip")["supports_text"], timeout=20
        )
        assert "text_search_unavailable" not in client.index(ds.name, "clip")
        assert client.search(ds.name, "a cat", index_key="clip")["total"] > 0


def test_a_request_met_by_its_dataset_s_deletion_answers_that_it_was_deleted(
    make_user_index,
):
    """Within the service's recheck interval a deleted dataset's ids read as
    "deleted samples" (422 unknown_sample_ids, "leave it out"), and a dataset gone
    under a worker as 422 "Dataset Dataset x not found not found": a client was
    told to change a correct request. The request now answers 404 as later ones."""
    import fiftyone as fo

    from fiftyone_clipbranches.service.backend import SdkBackend
    from fiftyone_clipbranches.service.errors import ApiError

    ds = make_user_index(n_per_class=4, name="svc-state-vanishing")
    name, pos = ds.name, ds.take(3, seed=0).values("id")
    backend = SdkBackend([name], recheck_s=3600.0)  # never rechecked on its own
    backend.load()
    body = {"dataset": name, "index_key": "clip", "positives": pos}
    assert backend.refine(body).rows.size > 0
    search = {"dataset": name, "index_key": "clip", "text": None, "k": 5}
    fo.delete_dataset(name)
    for call, req in (
        (backend.refine, body),
        (backend.search, {**search, "sample_ids": pos[:1]}),
    ):
        with pytest.raises(ApiError) as err:
            call(req)
        assert (err.value.status, err.value.code) == (404, "dataset_not_found")
        assert "was deleted" in err.value.message


def test_a_result_too_large_to_save_says_how_to_keep_it(make_user_index, monkeypatch):
    """Saving a result beyond the ids a saved view selects: 422 with the way to
    keep it (its scores copied to a field of their own), not only "refine
    further", which is wrong for a concept that large."""
    from fiftyone_clipbranches.sdk import settings
    from fiftyone_clipbranches.service.backend import SdkBackend
    from fiftyone_clipbranches.service.errors import ApiError
    from fiftyone_clipbranches.service.results import StoredResult

    ds = make_user_index(n_per_class=4, name="svc-state-too-large")
    pos = ds.take(3, seed=0).values("id")
    backend = SdkBackend([ds.name])
    backend.load()
    body = {"dataset": ds.name, "index_key": "clip", "positives": pos}
    ranking = backend.refine(body)
    n = len(ranking)
    monkeypatch.setattr(settings, "MAX_SELECTED_SAMPLES", n - 1)
    result = StoredResult("r1", "refine", ds.name, "clip", ranking, body)
    with pytest.raises(ApiError) as err:
        backend.save_view(result, "big", overwrite=False)
    assert (err.value.status, err.value.code) == (422, "result_too_large")
    assert f"holds {n:,} samples" in err.value.message
    assert "refine with a score field, then dataset.clone_sample_field" in (
        err.value.message
    )
    assert not ds.has_saved_view("big")
    # saved, then saved again (a client whose first answer was lost): 409, and the
    # words say clipbranches saved it
    monkeypatch.undo()
    assert backend.save_view(result, "big", overwrite=False)["n_samples"] == n
    with pytest.raises(ApiError) as err:
        backend.save_view(result, "big", overwrite=False)
    assert (err.value.status, err.value.code) == (409, "view_exists")
    assert "(clipbranches saved it at 20" in err.value.message


def test_an_index_built_since_the_last_recheck_is_answered_not_a_stale_404(
    make_user_index, tiny_clip_checkpoint
):
    """An index built (by another process) after the service last read its
    dataset: the request found no index, the refresh then found it, and the
    request still answered 404 index_not_found (a client retrying after a 503
    index_being_built met one stale 404). It is answered."""
    from user_path import build_user_index

    from fiftyone_clipbranches.service.backend import SdkBackend
    from fiftyone_clipbranches.service.errors import ApiError

    ds = make_user_index(n_per_class=4, name="svc-state-built-since")
    pos = ds.take(3, seed=0).values("id")
    backend = SdkBackend([ds.name], recheck_s=3600.0)  # never rechecked on its own
    backend.load()
    search = {"dataset": ds.name, "index_key": "late", "text": None, "k": 5}
    with pytest.raises(ApiError) as err:
        backend.search({**search, "sample_ids": pos[:1]})
    assert (err.value.status, err.value.code) == (404, "index_not_found")
    build_user_index(ds, tiny_clip_checkpoint, "late")
    found = backend.search({**search, "sample_ids": pos[:1]})
    assert len(found) == 5
    refined = backend.refine(
        {"dataset": ds.name, "index_key": "late", "positives": pos}
    )
    assert set(pos) <= set(refined.ids_of(refined.rows))  # labels are law


def test_a_dataset_deleted_while_a_stale_404_is_answered_again_is_a_404(
    make_user_index,
):
    """The second try of a request that met a stale 404 went without the checks
    of the first: a dataset deleted meanwhile answered what that broke on the way
    (422), not that it is gone."""
    from fiftyone_clipbranches.service.backend import SdkBackend
    from fiftyone_clipbranches.service.errors import ApiError, not_found, unprocessable

    ds = make_user_index(n_per_class=4, name="svc-state-gone-on-retry")
    backend = SdkBackend([ds.name], recheck_s=3600.0)
    backend.load()
    entry = backend._entry(ds.name)
    tries = []

    def answer():
        tries.append(1)
        if len(tries) == 1:  # the index was not found: built since, say
            raise not_found("index_not_found", "no index 'clip'")
        ds.delete()  # during the second try
        raise unprocessable("unprocessable", "2 samples were deleted")

    with pytest.raises(ApiError) as err:
        backend._answered(entry, "clip", answer)
    assert len(tries) == 2
    assert (err.value.status, err.value.code) == (404, "dataset_not_found")


def test_a_path_or_url_sent_as_text_is_refused_not_searched_as_words(
    make_user_index,
):
    """An image's path in "text" was searched as the words of the path (200,
    another answer than the SDK's image search of that file)."""
    from fiftyone_clipbranches.service.backend import SdkBackend
    from fiftyone_clipbranches.service.errors import ApiError

    ds = make_user_index(n_per_class=4, name="svc-state-path-text")
    backend = SdkBackend([ds.name], recheck_s=3600.0)
    backend.load()
    search = {"dataset": ds.name, "index_key": "clip", "sample_ids": None, "k": 3}
    path = ds.first().filepath
    for text in (path, f"file://{path}", "https://example.com/cat.JPG"):
        with pytest.raises(ApiError) as err:
            backend.search({**search, "text": text})
        assert (err.value.status, err.value.code) == (422, "unprocessable")
        assert "reads as an image's path or URL" in err.value.message
    for words in ("a cat.jpg on a mat", "cats/dogs", "~ a photo"):
        assert len(backend.search({**search, "text": words})) == 3
