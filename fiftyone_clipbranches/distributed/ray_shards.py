"""A sharded index on Ray: one actor per shard, shard builds as Ray tasks.

- :class:`RayShards`, the :class:`~fiftyone_clipbranches.engine.shards.ShardExecutor`
  whose shards are Ray actors (``max_restarts`` / ``max_task_retries``: an actor
  whose process dies is restarted, maps its shard again, and the call is retried).
  Each actor holds a :class:`~fiftyone_clipbranches.engine.shards.ShardWorker`
  opened read-only with ``np.load(mmap_mode="r")``, so actors on one machine share
  the page cache; the shard directories must be on a filesystem every node sees.
  The driver reads rows of the shards whose actors share its node from its own
  memory maps of their codes (the same pages), which saves a round trip per
  training set. Arguments common to every shard (a trained model, queries) larger than
  ``INLINE_BYTES`` are put in the object store once and sent by reference; smaller
  ones are inlined in each call.
- :func:`ray_builder`, a ``ShardBuilder`` building each shard as a Ray task.
- :func:`connect`: join a cluster (``"auto"``, ``"HOST:PORT"``) unless this process
  is already connected.

The merges stay in ``engine.shards.ShardedIndex``: this module only moves calls.
"""

from __future__ import annotations

import contextlib
import logging
import os
import pickle
import socket
import threading
import time
import weakref
from collections import Counter
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from fiftyone_clipbranches.engine.errors import (
    RayUnavailableError,
    ShardsUnavailableError,
)
from fiftyone_clipbranches.engine.shard_format import (
    ShardBuild,
    ShardSpec,
    build_shard,
)
from fiftyone_clipbranches.engine.shards import ShardExecutor, ShardWorker
from fiftyone_clipbranches.engine.subsets import FeatureSubsets

NAMESPACE = "clipbranches"
#: CPUs an actor reserves: 0, since a shard actor idles between queries and the
#: scans it runs use the machine's threads anyway (4 actors fit on 2 cores).
ACTOR_NUM_CPUS = 0.0
#: CPUs a shard-build task reserves (as many builds run at once as CPUs allow).
BUILD_NUM_CPUS = 1.0


def _ray():
    try:
        import ray
    except ImportError as e:
        raise RayUnavailableError(
            "Ray is not installed: pip install 'fiftyone-clipbranches[ray]'"
        ) from e
    return ray


def connect(address: str | None = None, **init_kwargs) -> None:
    """Connect this process to the Ray cluster at ``address`` (``"auto"``: the one
    started on this machine with ``ray start --head``; ``"HOST:PORT"``; None: a
    local cluster of this process) unless it is connected already."""
    ray = _ray()
    _check_reachable(address)  # a wrong address fails even when connected already
    if ray.is_initialized():
        watch_head()
        return
    kwargs = {
        "namespace": NAMESPACE,
        "log_to_driver": False,
        "logging_level": "warning",
        **init_kwargs,
    }
    global _lost_head
    try:
        with _default_token_auth_quiet():
            ray.init(address=address, **kwargs)
        _lost_head = None  # joined anew: bound to this cluster now
    except (ConnectionError, RuntimeError, ValueError) as e:
        if _is_host_port(address):  # _check_reachable found it listening
            raise RayUnavailableError(
                f"cannot join the Ray cluster at {address!r} ({e}), though its"
                " address answers: its nodes may have stopped (`ray status` on"
                " the head; start them again), or it was started with token"
                " authentication, which needs RAY_AUTH_MODE=token and its token"
                " (RAY_AUTH_TOKEN, or ~/.ray/auth_token) in this process too"
                " (docs/scale.md)"
            ) from e
        raise RayUnavailableError(
            f"cannot connect to the Ray cluster at {address!r} ({e}): start one with"
            " `ray start --head` (docs/scale.md)"
        ) from e
    watch_head()


#: The logger by which Ray says that a cluster it starts has its default token
#: authentication on.
_AUTH_LOGGER = "ray._private.authentication.authentication_token_setup"


class _DefaultTokenAuthFilter(logging.Filter):
    """Drops Ray's notice that a local cluster started with token authentication,
    its default (expected and harmless: the token stays in this user's ``~/.ray``);
    its warning that authentication is off goes through."""

    def filter(self, record: logging.LogRecord) -> bool:
        return not record.getMessage().startswith("Token authentication is enabled")


@contextlib.contextmanager
def _default_token_auth_quiet():
    logger = logging.getLogger(_AUTH_LOGGER)
    quiet = _DefaultTokenAuthFilter()
    logger.addFilter(quiet)
    try:
        yield
    finally:
        logger.removeFilter(quiet)


#: Seconds a cluster's address may take to accept a connection.
CONNECT_TIMEOUT_S = 5.0


def _is_host_port(address: str | None) -> bool:
    """Whether ``address`` names a head by ``HOST:PORT`` (not None, "auto" or a
    ``ray://`` client address)."""
    return bool(address) and address != "auto" and "://" not in address


def _check_reachable(address: str | None) -> None:
    """Fail at once when ``address`` is ``HOST:PORT`` and nothing listens there
    (``ray.init`` would retry for minutes)."""
    if not _is_host_port(address):
        return
    host, port = _host_port(address)
    if not host or port is None:
        raise RayUnavailableError(
            f"a Ray address is 'auto' or HOST:PORT, got {address!r}"
        )
    try:
        _connect(host, port)
    except OSError as e:
        raise RayUnavailableError(
            f"no Ray cluster answers at {address} ({e}): start one with"
            " `ray start --head` and pass the address it prints (docs/scale.md)"
        ) from None


def _connect(host: str, port: int) -> None:
    """Open and close a TCP connection to ``host:port`` (OSError when refused)."""
    socket.create_connection((host, port), timeout=CONNECT_TIMEOUT_S).close()


def _host_port(address: str) -> tuple[str, int | None]:
    """``(host, port)`` of ``HOST:PORT`` or ``[IPV6]:PORT`` (port None when it is
    not a number)."""
    host, _, port = address.rpartition(":")
    if host.startswith("[") and host.endswith("]"):
        host = host[1:-1]
    return host, int(port) if port.isdigit() else None


#: Seconds a call to the shards waits between checks that the cluster's head still
#: answers (a call to actors whose head is gone would wait until Ray ends the process).
HEAD_CHECK_S = 2.0


def head_address() -> str | None:
    """``HOST:PORT`` of the head (GCS) of the cluster this process is a driver of,
    or None when it is not connected, or connected as a Ray client (``ray://``:
    the head's own address need not be reachable from a client)."""
    ray = _ray()
    if not ray.is_initialized():
        return None
    from ray.util.client import ray as client

    if client.is_connected():
        return None
    return ray.get_runtime_context().gcs_address


#: Why the head of this process's cluster was found gone (None: it never was). It
#: stays: a process is bound to the cluster it joined, and one started anew at the
#: same address answers the check but not this process (Ray aborts it on its next
#: call), so only starting the process anew recovers.
_lost_head: str | None = None
_watch_lock = threading.Lock()
_watching = False


def head_problem() -> str | None:
    """What to do when the head of the cluster this process is a driver of does
    not accept a connection, or did not once since the process joined it; None
    when it always did, or there is none to check (see :func:`head_address`)."""
    global _lost_head
    if _lost_head is not None:
        return _lost_head
    address = head_address()
    if not address:
        return None
    host, port = _host_port(address)
    if port is None:
        return None  # not an address this check understands: Ray's own wait holds
    try:
        _connect(host, port)
    except OSError:
        _lost_head = (
            f"the Ray cluster's head at {address} stopped answering at"
            f" {time.strftime('%H:%M:%S')}, so the shards' actors cannot be reached:"
            " restart it (ray start --head), then this process, which"
            " stays bound to the cluster it joined (Ray ends a process that has lost"
            " its cluster's head); the index files are not at fault"
        )
        return _lost_head
    return None


def watch_head() -> None:
    """Check the head every :data:`HEAD_CHECK_S` seconds in a daemon thread (once
    per process), so that a head down for a few seconds and started again between
    two requests is still known as lost (:func:`head_problem`)."""
    global _watching
    with _watch_lock:
        if _watching or head_address() is None:
            return
        _watching = True

    def watch():
        global _watching
        while head_address() is not None and head_problem() is None:
            time.sleep(HEAD_CHECK_S)
        with _watch_lock:
            _watching = False  # lost (it stays so), or this process left the cluster

    threading.Thread(target=watch, name="clipbranches-ray-head", daemon=True).start()


def _check_head() -> None:
    """Raise ``ShardsUnavailableError`` when :func:`head_problem` finds one."""
    problem = head_problem()
    if problem is not None:
        raise ShardsUnavailableError(problem)


class _ShardActor:
    """The body of one shard actor (decorated by ``ray.remote`` at first use)."""

    def __init__(
        self, spec: ShardSpec, n_shards: int, subsets: dict, verify: str, threads: int
    ):
        subsets = FeatureSubsets.from_dict(subsets)
        self.worker = ShardWorker(spec, n_shards, subsets, verify)
        self.threads = threads

    def node_id(self) -> str:
        return _ray().get_runtime_context().get_node_id()

    def call(self, method: str, *args):
        import numba

        # per call: numba's thread count belongs to the calling thread
        numba.set_num_threads(min(self.threads, numba.config.NUMBA_NUM_THREADS))
        return getattr(self.worker, method)(*args)


class RayShards(ShardExecutor):
    """One Ray actor per shard (module docstring).

    Args:
        specs: the shards (``ShardedManifest.shards``).
        subsets: the index's feature subsets.
        verify: the level each actor opens its shard at.
        address: the cluster to connect to when not connected yet.
        num_cpus: CPUs each actor reserves.
        max_restarts, max_task_retries: Ray's actor fault tolerance (-1: always).
        threads: threads of each actor's parallel kernels (numba); default: its
            node's CPUs shared out among the actors placed there, at least 1
            (actors are placed round robin over the nodes: :func:`placements`).
            The actors are
            the parallelism: more threads than cores make each parallel launch
            wait for its threads (measured in docs/scale.md).
        local_reads: read rows of the shards whose actors run on this node (a
            training set's labelled and random rows, the neighbour pool) from
            memory maps of their codes in this process, which share the page
            cache with the actors, instead of a round trip to the actors; rows
            of shards on other nodes still go through their actors. Default
            True; False sends every read to the actors.

    Raises:
        IndexFormatError: a shard cannot be opened (the message names it).

    An actor Ray cannot restart where it ran (its node left the cluster) is
    replaced: on the first call that meets it, every shard is opened again by
    actors placed over the live nodes, and the call is made again;
    ``ShardsUnavailableError`` when they cannot be started.
    """

    def __init__(
        self,
        specs: Sequence[ShardSpec],
        subsets: FeatureSubsets,
        verify: str = "fast",
        *,
        address: str | None = None,
        num_cpus: float = ACTOR_NUM_CPUS,
        max_restarts: int = -1,
        max_task_retries: int = -1,
        threads: int | None = None,
        local_reads: bool = True,
    ):
        _ray()
        connect(address)
        if threads is not None and (
            isinstance(threads, bool) or not isinstance(threads, int) or threads < 1
        ):
            raise ValueError(f"threads must be an int >= 1, got {threads!r}")
        self.specs = list(specs)
        self._options = dict(
            subsets=subsets.to_dict(),
            verify=verify,
            num_cpus=num_cpus,
            max_restarts=max_restarts,
            max_task_retries=max_task_retries,
            threads=threads,
        )
        self._held = _Held()
        # a released index that a caller met again holds actors no cache frees
        weakref.finalize(self, _kill_held, self._held).atexit = False
        starts = [s.start for s in specs]
        self.offsets = np.array(starts + [starts[-1] + specs[-1].n_rows], np.int64)
        self.n_dims = int(subsets.n_dims)
        self.local_reads = local_reads
        self._local: dict[int, np.ndarray] = {}
        self._closed = False
        # held to swap the actors after a loss (once) and to close: callers share
        # one index across threads (the service, the App)
        self._lock = threading.Lock()
        self._generation = 0
        self._start_actors()

    @property
    def actors(self) -> list:
        """The actor handle of each shard (empty once released or closed)."""
        return self._held.actors

    @actors.setter
    def actors(self, handles: list) -> None:
        self._held.actors = handles

    def _start_actors(self) -> None:
        """One actor per shard, placed over the live nodes (:func:`placements`),
        each opening its shard (``check``); they replace ``actors`` at once."""
        ray = _ray()
        o = self._options
        actors = []
        try:
            for spec, (node, threads) in zip(self.specs, placements(len(self.specs))):
                actor = ray.remote(_ShardActor).options(
                    num_cpus=o["num_cpus"],
                    max_restarts=o["max_restarts"],
                    max_task_retries=o["max_task_retries"],
                    scheduling_strategy=_on_node(node),
                )
                actors.append(
                    actor.remote(
                        spec,
                        len(self.specs),
                        o["subsets"],
                        o["verify"],
                        o["threads"] or threads,
                    )
                )
            self._call(actors, "check")
            local = self._open_local_codes(actors) if self.local_reads else {}
        except BaseException:
            _kill(actors)
            raise
        self.actors, self._local = actors, local

    def _open_local_codes(self, actors) -> dict[int, np.ndarray]:
        from fiftyone_clipbranches.engine.shard_format import load_shard_codes

        here = _ray().get_runtime_context().get_node_id()
        nodes = _ray().get([a.node_id.remote() for a in actors])
        return {
            i: load_shard_codes(spec, len(self.specs), self.n_dims)
            for i, (spec, node) in enumerate(zip(self.specs, nodes))
            if node == here
        }

    def node_ids(self) -> list[str]:
        """The Ray node each shard's actor runs on."""
        return _ray().get([a.node_id.remote() for a in self.actors])

    def local_codes(self) -> dict[int, np.ndarray]:
        # a file cut short since it was mapped would kill this process at the
        # first read past its end: such a shard is read through its actor, which
        # opens it again and names the damage
        return {i: codes for i, codes in self._local.items() if _whole(codes)}

    def map(self, method, shared=(), per_shard=None, shards=None):
        with self._lock:
            self._check_open()
            actors, generation = self.actors, self._generation
        try:
            return self._call(actors, method, shared, per_shard, shards)
        except _actor_lost_errors() as e:
            lost = e
        # an actor Ray cannot restart where it was (its node left the cluster):
        # the shards are opened again on the live nodes (once, whichever thread
        # met the loss first), and the call is made again; not when the head is
        # gone (placing actors would wait on it, holding the lock)
        _check_head()
        with self._lock:
            self._check_open()
            if self._generation == generation or not self.actors:  # or released
                self._generation += 1
                old, self.actors, self._local = self.actors, [], {}
                _kill(old)
                try:
                    self._start_actors()
                except (
                    _ray().exceptions.RayError,
                    ConnectionError,
                    ShardsUnavailableError,
                ) as e:
                    raise self._unavailable(lost, e) from None
            actors = self.actors
        try:
            return self._call(actors, method, shared, per_shard, shards)
        except _actor_lost_errors() as e:
            raise self._unavailable(lost, e) from None

    def _check_open(self) -> None:
        if self._closed:
            raise RuntimeError("this sharded index was closed")

    def _unavailable(self, lost, again) -> ShardsUnavailableError:
        return ShardsUnavailableError(
            f"the Ray actors serving the shards of the index at"
            f" {self.specs[0].path.parent} are gone ({_first_line(lost)}) and could"
            f" not be started again ({_first_line(again)}): check the cluster (ray"
            " status); once it runs, the next query starts them (a cluster started"
            " anew needs this process started anew); the index files are not at"
            " fault"
        )

    def _call(self, actors, method, shared=(), per_shard=None, shards=None):
        ray = _ray()
        if not actors:  # a start after a loss failed: the next call tries again
            raise ray.exceptions.RayActorError()
        chosen = list(range(self.n_shards) if shards is None else shards)
        refs = [ray.put(a) if _large(a) else a for a in shared]
        calls = []
        for j, i in enumerate(chosen):
            own = per_shard[j] if per_shard is not None else ()
            calls.append(actors[i].call.remote(method, *refs, *own))
        try:
            return _answers(ray, calls)
        except ray.exceptions.RayTaskError as e:
            cause = getattr(e, "cause", None)
            if isinstance(cause, Exception):
                raise cause from None
            raise

    def pids(self) -> list[int]:
        """Process id of each shard's actor (what a fault test kills)."""
        return self.map("pid")

    def release(self) -> None:
        """Stop the actors (the index left a cache). The next call, or one running
        meanwhile, meets no actor and starts new ones, as after a loss."""
        with self._lock:
            old, self.actors, self._local = self.actors, [], {}
        _kill(old)

    def close(self) -> None:
        with self._lock:
            self._closed = True
            old, self.actors, self._local = self.actors, [], {}
        _kill(old)


def _whole(codes: np.ndarray) -> bool:
    """Whether the file behind memory-mapped ``codes`` still holds all of them."""
    filename = getattr(codes, "filename", None)
    if filename is None:
        return True
    try:
        return os.stat(filename).st_size >= codes.offset + codes.nbytes
    except OSError:
        return False


class _Held:
    """The actor handles of a :class:`RayShards` (what its finalizer stops)."""

    __slots__ = ("actors",)

    def __init__(self):
        self.actors = []


def _kill_held(held: _Held) -> None:
    actors, held.actors = held.actors, []
    if actors:
        _kill(actors)


def _answers(ray, calls) -> list:
    """``ray.get(calls)``, failing with ``ShardsUnavailableError`` as soon as the
    cluster's head is found gone (checked every :data:`HEAD_CHECK_S` seconds of
    waiting): the actors' calls are retried forever (``max_task_retries=-1``)."""
    while True:
        try:
            return ray.get(calls, timeout=HEAD_CHECK_S)
        except ray.exceptions.GetTimeoutError:
            _check_head()


def _kill(actors) -> None:
    ray = _ray()
    for a in actors:
        with contextlib.suppress(Exception):  # already gone with its node
            ray.kill(a, no_restart=True)


def _actor_lost_errors() -> tuple[type[Exception], ...]:
    """Ray's errors for an actor that is gone for good or cannot be placed."""
    exceptions = _ray().exceptions
    return (
        exceptions.RayActorError,
        exceptions.ActorUnschedulableError,
        exceptions.ObjectLostError,
    )


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip().splitlines()
    return f"{type(exc).__name__}: {text[0]}" if text else type(exc).__name__


#: Arguments larger than this (pickled) go to the object store once, shared by
#: every actor; smaller ones travel inlined in each call (cheaper than a fetch).
INLINE_BYTES = 100_000


def _large(value) -> bool:
    """Whether an argument is worth one object-store copy shared by every actor."""
    if isinstance(value, bool | int | float | str | type(None)):
        return False
    if isinstance(value, np.ndarray):
        return value.nbytes > INLINE_BYTES
    return len(pickle.dumps(value, protocol=5)) > INLINE_BYTES


def placements(n_actors: int) -> list[tuple[str, int]]:
    """``(node id, threads)`` of each of ``n_actors`` shard actors: round robin
    over the cluster's live nodes that have CPUs (this process's node first), so
    every machine holds one before any holds two; each actor gets its node's CPUs
    shared out among the actors placed there."""
    ray = _ray()
    here = ray.get_runtime_context().get_node_id()
    alive = [n for n in ray.nodes() if n.get("Alive")]
    nodes = [n for n in alive if n["Resources"].get("CPU", 0) > 0] or alive
    if not nodes:  # the head answers, but every node's raylet has stopped
        raise ShardsUnavailableError(
            "the Ray cluster has no live node to run the shards' actors on (its"
            " head answers, its nodes' raylets stopped): check the cluster (ray"
            " status) and start it again"
        )
    nodes.sort(key=lambda n: (n["NodeID"] != here, n["NodeID"]))
    chosen = [nodes[i % len(nodes)] for i in range(n_actors)]
    per_node = Counter(n["NodeID"] for n in chosen)
    return [
        (
            n["NodeID"],
            max(1, int(n["Resources"].get("CPU", 1)) // per_node[n["NodeID"]]),
        )
        for n in chosen
    ]


def _on_node(node_id: str):
    from ray.util.scheduling_strategies import NodeAffinitySchedulingStrategy

    # hard: Ray places actors that ask for no resources on a random node under
    # any other strategy (soft affinity and SPREAD included)
    return NodeAffinitySchedulingStrategy(node_id, soft=False)


def ray_executor_factory(address: str | None = None, **options):
    """``fn(specs, subsets, verify) -> RayShards`` for ``ShardedIndex.load``."""

    def factory(specs, subsets, verify):
        return RayShards(specs, subsets, verify, address=address, **options)

    return factory


def _build_task(codes_file: str, out: str, subsets: dict, leaf_size: int) -> int:
    codes = np.load(codes_file, mmap_mode="r")
    build_shard(
        ShardBuild(codes, Path(out), FeatureSubsets.from_dict(subsets), leaf_size)
    )
    return int(codes.shape[0])


def ray_builder(address: str | None = None, num_cpus: float = BUILD_NUM_CPUS):
    """A ``ShardBuilder`` running each shard's build as a Ray task (in parallel as
    far as the cluster's CPUs allow), with one progress bar across shards.

    Each shard's codes are first written beside its directory (``.<name>.codes.npy``,
    removed afterwards) for the task to map: the index directory must be on a
    filesystem every node sees.
    """

    def build(jobs: Sequence[ShardBuild], progress: bool) -> None:
        from tqdm.auto import tqdm

        ray = _ray()
        connect(address)
        task = ray.remote(_build_task).options(num_cpus=num_cpus, max_retries=2)
        files, pending = [], {}
        try:
            for job in jobs:
                f = job.path.parent / f".{job.path.name}.codes.npy"
                np.save(f, np.ascontiguousarray(job.codes))
                files.append(f)
                ref = task.remote(
                    str(f), str(job.path), job.subsets.to_dict(), job.leaf_size
                )
                pending[ref] = job
            with tqdm(
                total=len(jobs),
                desc="building shards",
                unit="shard",
                disable=not progress,
            ) as bar:
                while pending:
                    done, _ = ray.wait(list(pending), num_returns=1)
                    for ref in done:
                        try:
                            ray.get(ref)
                        except ray.exceptions.RayTaskError as e:
                            cause = getattr(e, "cause", None)
                            raise (
                                cause if isinstance(cause, Exception) else e
                            ) from None
                        pending.pop(ref)
                        bar.update(1)
        except BaseException:
            for ref in pending:  # the staging directory is removed by the caller
                ray.cancel(ref, force=True)
            raise
        finally:
            for f in files:
                with contextlib.suppress(OSError):
                    os.unlink(f)

    return build
