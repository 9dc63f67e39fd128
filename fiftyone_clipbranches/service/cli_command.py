"""``clipbranches serve``: argument parsing and the command itself (wired by cli.py)."""

from __future__ import annotations

import argparse
import logging
import os
from urllib.parse import urlsplit, urlunsplit

from fiftyone_clipbranches.cli_types import (
    CommandLineError,
    finite_number,
    whole_number,
)
from fiftyone_clipbranches.service.backend import VERIFY_LEVELS
from fiftyone_clipbranches.service.server import (
    CORS_WITHOUT_TOKEN,
    DEFAULT_PORT,
    ServiceConfig,
    checked_proxy,
    resolve_token,
)

_seconds = finite_number("seconds")
logger = logging.getLogger(__name__)


def add_serve_arguments(parser: argparse.ArgumentParser) -> None:
    """Add the options of ``clipbranches serve`` to ``parser``."""
    parser.add_argument(
        "--host",
        default="127.0.0.1",
        help="interface to bind (default 127.0.0.1; 0.0.0.0 exposes the service)",
    )
    parser.add_argument(
        "--port",
        type=whole_number(0, 65535),
        default=DEFAULT_PORT,
        help=f"TCP port (default {DEFAULT_PORT}; 0 picks a free one, printed)",
    )
    parser.add_argument(
        "--threads",
        type=whole_number(1),
        default=8,
        help="HTTP worker threads (default 8)",
    )
    parser.add_argument(
        "--compute-workers",
        type=whole_number(1),
        default=ServiceConfig.compute_workers,
        help="requests training or querying at once: worker processes, each holding "
        f"the memory-mapped indexes (default {ServiceConfig.compute_workers}; "
        "docs/service.md)",
    )
    parser.add_argument(
        "--compute-threads",
        action="store_true",
        help="compute in threads of the serving process instead of worker "
        "processes (one process, less memory; probes wait while kernels run)",
    )
    parser.add_argument(
        "--compute-nice",
        type=whole_number(0, 19),
        default=ServiceConfig.compute_nice,
        help="niceness of the worker processes, 0-19 (default "
        f"{ServiceConfig.compute_nice}: the HTTP threads get the CPU first)",
    )
    parser.add_argument(
        "--worker-threads",
        type=whole_number(1),
        default=ServiceConfig.worker_threads,
        help="threads of each parallel kernel in a worker process (default "
        f"{ServiceConfig.worker_threads}: the workers are the parallelism)",
    )
    parser.add_argument(
        "--max-queued",
        type=whole_number(0),
        default=ServiceConfig.max_queued,
        help="requests waiting for a compute worker beyond those computing; more "
        f"are answered 503 busy at once (default {ServiceConfig.max_queued})",
    )
    parser.add_argument(
        "--timeout",
        type=_seconds,
        default=60.0,
        help="time limit of one search, refinement or save, in seconds (default 60)",
    )
    parser.add_argument(
        "--max-results",
        type=whole_number(1),
        default=ServiceConfig.max_results,
        help="results kept for paging, shared by every client; the oldest is dropped"
        f" for a new one (default {ServiceConfig.max_results})",
    )
    parser.add_argument(
        "--result-ttl",
        type=_seconds,
        default=ServiceConfig.result_ttl_s,
        help="seconds a result is kept for paging after its last read (default"
        f" {ServiceConfig.result_ttl_s:g})",
    )
    parser.add_argument(
        "--dataset",
        action="append",
        dest="datasets",
        metavar="NAME",
        help="dataset to serve (repeatable; default: every dataset with an index)",
    )
    parser.add_argument(
        "--verify",
        choices=VERIFY_LEVELS,
        default="fast",
        help="check each index before serving it: none, fast (default: manifest and "
        "sampled checksums) or full (every byte; reads each index once); an index "
        "that fails is logged and not served, the others are",
    )
    parser.add_argument(
        "--connection-limit",
        type=whole_number(1),
        default=ServiceConfig.connection_limit,
        help="open connections held at once (default "
        f"{ServiceConfig.connection_limit}); slow clients hold one each",
    )
    parser.add_argument(
        "--token",
        help="bearer token (default $CLIPBRANCHES_SERVICE_TOKEN, else generated and "
        "printed); prefer the environment variable, command lines are visible to "
        "other users",
    )
    parser.add_argument(
        "--no-token",
        action="store_true",
        help="serve without authentication (only allowed on a loopback host)",
    )
    parser.add_argument(
        "--cors-origin",
        action="append",
        default=[],
        metavar="ORIGIN",
        help="let pages of this origin (e.g. https://app.example.org) call the "
        "service from a browser; repeat for more, '*' for any (the token is "
        "still required)",
    )
    parser.add_argument(
        "--trusted-proxy",
        metavar="ADDRESS",
        help="the address of a reverse proxy in front of the service: the client"
        " its X-Forwarded-For names is logged (--access-log) as the request's"
        " address; the header is ignored from any other address",
    )
    parser.add_argument(
        "--access-log",
        action="store_true",
        help="log a line per request answered: client address, method, path,"
        " status, milliseconds"
        " (a client that leaves before its answer is not logged)",
    )


def run_serve(args: argparse.Namespace) -> int:
    """Run ``clipbranches serve`` with parsed ``args``; returns the exit status."""
    from fiftyone_clipbranches.service.backend import check_datasets_exist
    from fiftyone_clipbranches.service.log_setup import configure_logging
    from fiftyone_clipbranches.service.server import serve

    check_settings(args)
    if getattr(args, "ray_address", None):  # `clipbranches serve --ray-address`
        _join_ray(args.ray_address)
    check_datasets_exist(args.datasets)  # before the port is bound
    configure_logging("%(asctime)s %(levelname)s %(name)s: %(message)s")
    say_settings()
    return serve(
        host=args.host,
        port=args.port,
        threads=args.threads,
        token=args.token,
        allow_no_token_on_localhost=args.no_token,
        datasets=args.datasets,
        compute_workers=args.compute_workers,
        compute_mode="threads" if args.compute_threads else "processes",
        compute_nice=args.compute_nice,
        worker_threads=args.worker_threads,
        max_queued=args.max_queued,
        request_timeout_s=args.timeout,
        max_results=args.max_results,
        result_ttl_s=args.result_ttl,
        verify=args.verify,
        connection_limit=args.connection_limit,
        cors_origins=tuple(args.cors_origin),
        access_log=args.access_log,
        trusted_proxy=args.trusted_proxy,
    )


def _join_ray(address: str) -> None:
    """Answer sharded indexes through the Ray cluster at ``address`` (refused
    settings are said first; an unreachable cluster fails here), saying where."""
    from fiftyone_clipbranches.sdk.sharding import ray_head_address, use_ray

    use_ray(address)
    head = ray_head_address()
    where = f"{head} (what 'auto' found)" if address == "auto" and head else address
    print(f"sharded indexes are answered by Ray actors at {where}")


def check_settings(args: argparse.Namespace) -> None:
    """Refuse, before anything starts, settings that contradict each other or that
    the service would otherwise trip on later, index by index."""
    from fiftyone_clipbranches.sdk.remote import TOKEN_ENV
    from fiftyone_clipbranches.sdk.settings import index_cache_size

    if args.no_token and os.environ.get(TOKEN_ENV, "").strip():
        raise CommandLineError(
            f"--no-token, but ${TOKEN_ENV} is set (the service would require it):"
            " unset it to serve without a token, or leave out --no-token"
        )
    try:  # a token too short, or none on a host not loopback
        token, _ = resolve_token(args.token, args.host, args.no_token)
    except ValueError as e:
        raise CommandLineError(str(e)) from None
    if token is None and args.cors_origin:
        raise CommandLineError(CORS_WITHOUT_TOKEN)
    index_cache_size()  # a value that is no count, said now
    if args.trusted_proxy is not None:
        try:
            checked_proxy(args.trusted_proxy)
        except ValueError as e:
            raise CommandLineError(str(e)) from None  # it names the option


def say_settings() -> None:
    """Log where the service reads from (a misspelt FIFTYONE_DATABASE_URI serves
    an empty database of FiftyOne's own, ready and answering nothing) and the
    clipbranches variables it ignores."""
    import fiftyone as fo

    from fiftyone_clipbranches.sdk.settings import index_root, unknown_environment

    for words in unknown_environment():
        logger.warning("%s: it is ignored", words)
    uri = fo.config.database_uri
    database = (
        _without_credentials(uri)
        if uri
        else "FiftyOne's own (FIFTYONE_DATABASE_URI is not set)"
    )
    logger.info("database: %s; index root: %s", database, index_root())


def _without_credentials(uri: str) -> str:
    parts = urlsplit(uri)
    host = parts.netloc.rsplit("@", 1)[-1]
    return urlunsplit((parts.scheme, host, parts.path, "", ""))


def main(argv: list[str] | None = None) -> int:
    """Entry point of ``python -m fiftyone_clipbranches.service``."""
    parser = argparse.ArgumentParser(
        prog="python -m fiftyone_clipbranches.service",
        description="Serve clipbranches search over HTTP (/v1 API).",
    )
    add_serve_arguments(parser)
    return run_serve(parser.parse_args(argv))
