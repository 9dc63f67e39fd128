"""Sharded indexes in the SDK: how index trees are built (one index or S shards, in
this process or as Ray tasks) and how a sharded index is opened (its shards in this
process, or one Ray actor each when a Ray cluster is configured).

The Ray cluster is a process setting, ``$CLIPBRANCHES_RAY_ADDRESS`` (``"auto"`` or
``"HOST:PORT"``; :func:`use_ray` sets it, so processes started afterwards inherit
it): with it, a sharded index is answered by actors; without it, in this process.
Indexes of one shard are today's format and never use Ray.
"""

from __future__ import annotations

import os

import numpy as np

from fiftyone_clipbranches.sdk.errors import engine_errors

RAY_ADDRESS_ENV = "CLIPBRANCHES_RAY_ADDRESS"


def ray_address() -> str | None:
    """The configured Ray cluster address, or None (shards answered in process)."""
    return os.environ.get(RAY_ADDRESS_ENV) or None


def use_ray(address: str | None) -> None:
    """Answer sharded indexes through Ray actors on the cluster at ``address``
    (None: in this process again), and connect now, so that a wrong address fails
    here. Sharded indexes this process loaded before are loaded again, the new
    way (at their next use; pinned ones, a service's, at once).

    Raises:
        sdk.RayUnavailableError: Ray is not installed or the cluster cannot be
            reached.
    """
    from fiftyone_clipbranches.sdk.bundle import forget_sharded_bundles

    if address is not None:
        connect_cluster(address)
    if address == ray_address():
        return  # the loaded indexes are answered this way already
    if address is None:
        os.environ.pop(RAY_ADDRESS_ENV, None)
    else:
        os.environ[RAY_ADDRESS_ENV] = address
    forget_sharded_bundles()


def ray_head_address() -> str | None:
    """``HOST:PORT`` of the head of the Ray cluster this process joined (what
    ``"auto"`` resolved to), or None (no cluster used or connected, or joined as a
    Ray client)."""
    if ray_address() is None:
        return None
    from fiftyone_clipbranches.distributed import ray_shards

    try:
        return ray_shards.head_address()
    except ray_shards.RayUnavailableError:
        return None


def ray_head_problem() -> str | None:
    """Why the Ray cluster this process answers sharded indexes with cannot answer
    now (its head does not accept a connection), or None (it can, or no cluster is
    used or connected)."""
    if ray_address() is None:
        return None
    from fiftyone_clipbranches.distributed import ray_shards

    try:
        return ray_shards.head_problem()
    except ray_shards.RayUnavailableError:  # Ray not installed: nothing uses it
        return None


def connect_cluster(address: str) -> None:
    """Connect this process to the Ray cluster at ``address`` now, so that a wrong
    address fails before any work.

    Raises:
        sdk.RayUnavailableError: Ray is not installed or the cluster cannot be
            reached.
    """
    from fiftyone_clipbranches.distributed.ray_shards import connect

    with engine_errors():
        connect(address)


#: Most shards an index may have (each is a worker process on a cluster).
MAX_SHARDS = 1024


def replaced_shards(ds, index_key: str) -> int:
    """The shards of index ``index_key`` of ``ds``, as ``shard_count`` reads them
    (a damaged shard or top manifest included): what a build in its place keeps."""
    from pathlib import Path

    from fiftyone_clipbranches.engine.index_io import shard_count
    from fiftyone_clipbranches.sdk.bundle import INDEX_DIR
    from fiftyone_clipbranches.sdk.runs import get_index_config

    return shard_count(Path(get_index_config(ds, index_key).index_dir) / INDEX_DIR)


def check_shards(shards, n_rows: int | None = None) -> int:
    """``shards`` as an int, checked: from 1 to :data:`MAX_SHARDS`, and at most
    ``n_rows`` (the rows to index, when known) so that no shard is empty."""
    if isinstance(shards, bool) or not isinstance(shards, int | np.integer):
        raise TypeError(f"shards must be an int >= 1; got {shards!r}")
    if not 1 <= shards <= MAX_SHARDS:
        raise ValueError(f"shards must be from 1 to {MAX_SHARDS}; got {shards}")
    if n_rows is not None and shards > max(n_rows, 1):
        raise ValueError(
            f"{shards} shards for {n_rows} samples would leave shards empty: at"
            f" most {max(n_rows, 1)} (one sample each); a shard per machine of the"
            " cluster is the usual choice (docs/scale.md)"
        )
    return int(shards)


def check_ray_address(shards: int, address) -> None:
    """Refuse a Ray cluster named for an index of one shard: it is built here,
    and a user who asked for a distributed build would get none without a word
    (the configured cluster, ``CLIPBRANCHES_RAY_ADDRESS``, is no request)."""
    if address is not None and shards == 1:
        raise ValueError(
            f"ray_address={address!r} builds shards on a Ray cluster, and this index"
            " has one shard (built here): give the number of shards too (shards=N;"
            " CLI: --shards N), or no Ray address"
        )


def tree_builder(
    codes, subsets, leaf_size, shards: int = 1, address=None, progress=False
):
    """``fn(path) -> index`` building the trees of ``codes`` into ``path``: one
    ``CodeIndex`` (``shards == 1``, today's format) or ``shards`` shards built as Ray
    tasks on the Ray cluster ``address`` (or the configured one), else here, with a
    progress bar across shards when ``progress``."""
    from fiftyone_clipbranches.engine.index import CodeIndex

    kwargs = {"subsets": subsets}
    if leaf_size is not None:
        kwargs["leaf_size"] = leaf_size
    shards = check_shards(shards)
    configured = address
    if shards == 1:
        return lambda path: CodeIndex.build(
            np.ascontiguousarray(codes), path=path, **kwargs
        )

    def build(path):
        from fiftyone_clipbranches.engine.shard_format import build_sharded_index
        from fiftyone_clipbranches.engine.shards import ShardedIndex

        address = configured if configured is not None else ray_address()
        builder = None
        if address is not None:
            from fiftyone_clipbranches.distributed.ray_shards import ray_builder

            builder = ray_builder(address)
        with engine_errors():
            build_sharded_index(
                codes, path, shards, builder=builder, progress=progress, **kwargs
            )
        return ShardedIndex.load(path, verify="none")

    return build


def open_code_index(path, verify: str = "fast"):
    """The trees of an index directory: a ``CodeIndex``, or a ``ShardedIndex``
    answered by Ray actors when a cluster is configured (:func:`use_ray`), else in
    this process."""
    from fiftyone_clipbranches.engine.shards import InProcessShards, open_index

    make = InProcessShards
    address = ray_address()
    if address is not None:
        from fiftyone_clipbranches.distributed.ray_shards import ray_executor_factory

        make = ray_executor_factory(address)

    def factory(specs, subsets, verify):
        return _SdkErrors(make(specs, subsets, verify))

    return open_index(path, verify, factory)


class _SdkErrors:
    """A shard executor whose query-time file errors are the SDK's."""

    def __init__(self, executor):
        self.executor = executor
        self.offsets = executor.offsets

    @property
    def n_shards(self) -> int:
        return self.executor.n_shards

    def map(self, *args, **kwargs):
        from fiftyone_clipbranches.sdk.errors import engine_errors

        with engine_errors():
            return self.executor.map(*args, **kwargs)

    def __getattr__(self, name):  # pids(), specs, ... of the wrapped executor
        return getattr(self.executor, name)

    def close(self) -> None:
        self.executor.close()


def n_shards(index) -> int:
    """Shards of a loaded index (1 for a ``CodeIndex``)."""
    return int(getattr(index, "n_shards", 1))
