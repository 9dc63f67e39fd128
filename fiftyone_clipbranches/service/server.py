"""Serving the API with waitress, a production WSGI server (pure Python, threaded).

:func:`serve` blocks until SIGINT/SIGTERM; :func:`start_server` returns a handle
running in a background thread (for embedding and tests).
"""

from __future__ import annotations

import errno
import logging
import os
import secrets
import signal
import socket
import sys
import threading
import time
import urllib.parse
from dataclasses import dataclass

from fiftyone_clipbranches.sdk.remote import checked_token
from fiftyone_clipbranches.service.app import (
    SAVE_THREADS,
    SAVES_QUEUED,
    create_app,
    is_loopback,
)
from fiftyone_clipbranches.service.client import TOKEN_ENV
from fiftyone_clipbranches.service.compute import ComputePool
from fiftyone_clipbranches.service.requests import MAX_BODY_BYTES
from fiftyone_clipbranches.service.results import ResultStore

logger = logging.getLogger(__name__)

DEFAULT_PORT = 5152
#: waitress refuses bodies above this on its own (plain text answer); bodies
#: between ``MAX_BODY_BYTES`` and this get the API's JSON 413.
TRANSPORT_BODY_LIMIT = 16 * MAX_BODY_BYTES
#: Seconds the requests a stop interrupts get to send their 503.
ANSWER_AFTER_STOP_S = 5.0
_DEFAULT_PORTS = {"http": 80, "https": 443}


@dataclass
class ServiceConfig:
    """Everything :func:`start_server` needs besides the backend.

    Attributes:
        host: interface to bind; 127.0.0.1 unless you mean to expose the service.
        port: TCP port (0 picks a free one).
        threads: waitress worker threads for everything but compute and saves;
            the server adds one per request admitted to either (``compute_workers
            + max_queued``, and ``app.SAVE_THREADS + app.SAVES_QUEUED``), so probes
            and pages always find a thread.
        token: bearer token; None reads ``$CLIPBRANCHES_SERVICE_TOKEN``, else one is
            generated (and printed by :func:`serve`).
        allow_no_token_on_localhost: with no token given, serve without
            authentication instead of generating one; only for loopback hosts.
        compute_workers: requests doing CPU work (training, index queries) at once:
            worker processes (``compute_mode="processes"``) or threads.
        compute_mode: ``"processes"`` (default): searches and refinements run in
            a pool of worker processes holding the memory-mapped indexes
            (``service/workers.py``), so the HTTP threads answer while they
            compute; ``"threads"``: in threads of the serving process (less
            memory, one process; backends without worker support always do).
        compute_nice: niceness added to the worker processes (0-19), so the HTTP
            threads get the CPU first.
        worker_threads: threads of each parallel kernel in a worker process
            (numba; at most ``NUMBA_NUM_THREADS``).
        max_queued: requests allowed to wait for a compute worker before 503s.
        request_timeout_s: time limit of a search, refinement or save.
        result_ttl_s, max_results, max_result_bytes: bounds of the result store.
        connection_limit: open connections held at once; beyond it waitress stops
            accepting until one closes (slow or idle clients hold one each).
        channel_timeout_s: an idle connection (nothing received or sent) is
            closed after this many seconds.
        request_read_timeout_s: a request must arrive whole (head and body) within
            this many seconds of its first byte, or its connection is closed; a
            client trickling bytes keeps a connection busy no longer than this.
        cleanup_interval_s: how often the two timeouts above are checked.
        max_request_header_size: bytes of request line and headers accepted.
        cors_origins: origins (``"https://host[:port]"``) whose browser pages may
            call the API (CORS), ``"*"`` for any; none by default (the token is
            required all the same).
        access_log: log a line per request answered (client address, method,
            path, status, ms).
        trusted_proxy: address of a reverse proxy in front of the service: the
            client its ``X-Forwarded-For`` names is the request's address (the
            access log's); from any other address the header is dropped.
    """

    host: str = "127.0.0.1"
    port: int = DEFAULT_PORT
    threads: int = 8
    token: str | None = None
    allow_no_token_on_localhost: bool = False
    compute_workers: int = 2
    compute_mode: str = "processes"
    compute_nice: int = 10
    worker_threads: int = 1
    max_queued: int = 32
    request_timeout_s: float = 60.0
    result_ttl_s: float = 900.0
    max_results: int = 64
    max_result_bytes: int = 512 << 20
    connection_limit: int = 1000
    channel_timeout_s: int = 30
    request_read_timeout_s: int = 20
    cleanup_interval_s: int = 2
    max_request_header_size: int = 64 << 10
    cors_origins: tuple[str, ...] = ()
    access_log: bool = False
    trusted_proxy: str | None = None

    def __post_init__(self):
        if self.trusted_proxy is not None:
            self.trusted_proxy = checked_proxy(self.trusted_proxy)


def checked_proxy(address: str) -> str:
    """``address`` if it is one IP address (the proxy's, as its connections come
    from it); else ``ValueError``: ``*`` would let every client write the address
    the log shows, and a host name never matches a connection's address."""
    import ipaddress

    try:
        return str(ipaddress.ip_address(str(address).strip()))
    except ValueError:
        raise ValueError(
            f"--trusted-proxy {address!r}: give the proxy's IP address (e.g."
            " 127.0.0.1 or 10.0.0.5), one address, as its connections come from it"
        ) from None


CORS_WITHOUT_TOKEN = (
    "--cors-origin needs a token: without one, any page of those origins open in"
    " the user's browser could search and save through the service; drop"
    " --no-token (or --cors-origin)"
)


def resolve_token(
    token: str | None, host: str, allow_no_token_on_localhost: bool
) -> tuple[str | None, bool]:
    """``(token, generated)``: the token to require, or None for no authentication.

    Raises:
        ValueError: authentication disabled on a non-loopback host, or a token that
            is too short to be a secret.
    """
    token = token or os.environ.get(TOKEN_ENV) or None
    if token is not None:
        # an env file or a secret often ends in a newline: no client sends it
        token = checked_token(token.strip())
        if len(token) < 16:
            raise ValueError(
                "the service token must be at least 16 characters; generate one with "
                "`python -c 'import secrets; print(secrets.token_urlsafe(32))'`"
            )
        return token, False
    if allow_no_token_on_localhost:
        if not is_loopback(host):
            raise ValueError(
                f"refusing to serve without a token on {host!r}: authentication may "
                "only be disabled on a loopback address (127.0.0.1, ::1, localhost)"
            )
        return None, False
    return secrets.token_urlsafe(32), True


class RunningService:
    """A service running in a background thread; :meth:`stop` shuts it down."""

    def __init__(self, server, app, backend, pool, token, loader, workers=None):
        self._server = server
        self.app = app
        self.backend = backend
        self.pool = pool
        self.workers = workers
        self.token = token
        self._loader = loader
        self._stopped = False
        self._thread = threading.Thread(
            target=server.run, name="clipbranches-service", daemon=True
        )

    @property
    def port(self) -> int:
        return int(self._server.effective_port)

    @property
    def host(self) -> str:
        return str(self._server.effective_host)

    @property
    def url(self) -> str:
        host = self.host
        if ":" in host:
            host = f"[{host}]"
        return f"http://{host}:{self.port}"

    def __repr__(self) -> str:  # the token stays out of a notebook's output
        state = "stopped" if self._stopped else "running"
        return f"RunningService({self.url}, {state}; .token, .stop())"

    def _start(self) -> RunningService:
        self._thread.start()
        return self

    def wait_ready(self, timeout: float | None = None) -> bool:
        """Wait for the indexes to load and the compute workers to start; False on
        timeout, when loading failed, or when no index found could be loaded (see
        ``/v1/ready``)."""
        deadline = None if timeout is None else time.monotonic() + timeout
        self._loader.join(timeout)
        if self.workers is not None and not getattr(self.backend, "load_error", None):
            left = None if deadline is None else max(0.0, deadline - time.monotonic())
            self.workers.wait_ready(left)
        return self.backend.is_ready()

    def run_forever(self) -> None:
        """Block the calling thread until the server stops."""
        while self._thread.is_alive():
            self._thread.join(0.5)

    def stop(self, timeout: float = 10.0) -> None:
        """Stop accepting, let requests in progress end (up to ``timeout``; those
        still computing in worker processes then answer ``503 shutting_down``:
        computing in threads, they cannot be stopped; those waiting for a worker
        answer it at once), free the port and end the server thread."""
        from waitress import wasyncore

        if self._stopped:
            return
        self._stopped = True
        server = self._server
        if self._thread.is_alive():
            # The asyncore loop owns its sockets: ask it to close them itself, the
            # listening socket first, everything (the trigger too) once idle.
            server.trigger.pull_trigger(lambda: wasyncore.dispatcher.close(server))
            self.pool.drain()  # those waiting for a compute thread: 503 now
            if self.workers is not None:  # and those waiting for a worker
                self.workers.drain()
            dispatcher = server.task_dispatcher
            if not _drained(dispatcher, timeout) and self.workers is not None:
                # stopping the workers answers what they compute (503), where
                # closing the connections would leave its clients without a word
                self.workers.shutdown(timeout=timeout)
                _drained(dispatcher, ANSWER_AFTER_STOP_S)
            time.sleep(0.1)  # let the loop flush the last answers
            server.trigger.pull_trigger(lambda: wasyncore.close_all(server._map))
            self._thread.join(timeout)
        server.task_dispatcher.shutdown(timeout=timeout)
        if self.workers is not None:
            self.workers.shutdown(timeout=timeout)
        self.pool.shutdown()
        # a save waiting for another process's (its claim) holds no stop
        self.app.extensions["clipbranches"]["saves"].shutdown(wait=False)


def _drained(dispatcher, timeout: float) -> bool:
    """Wait up to ``timeout`` seconds for waitress's ``dispatcher`` to have no
    request running or queued; whether it has none."""
    deadline = time.monotonic() + timeout
    while dispatcher.active_count or dispatcher.queue:
        if time.monotonic() >= deadline:
            return False
        time.sleep(0.05)
    return True


#: Why a compute worker that ends while it starts may have: it imported the
#: script that starts the service, which started the service again.
UNGUARDED = (
    "a script that starts the service must do so under `if __name__ =="
    " '__main__':` (each compute worker process imports that script, as Python's"
    " multiprocessing does)"
)


#: Exit status of a worker that ended for :data:`UNGUARDED` (``EX_CONFIG``).
UNGUARDED_EXIT = 78


def refuse_in_a_starting_worker() -> None:
    """End a worker process that, importing its parent's script (which has no
    ``__main__`` guard), was about to start a service of its own (and workers,
    which Python refuses in words of its own), with :data:`UNGUARDED_EXIT`."""
    import multiprocessing as mp

    if getattr(mp.current_process(), "_inheriting", False):
        sys.stderr.write(f"the service was started in a compute worker: {UNGUARDED}\n")
        sys.stderr.flush()
        os._exit(UNGUARDED_EXIT)


def start_server(
    backend, config: ServiceConfig | None = None, **overrides
) -> RunningService:
    """Bind, start serving in a background thread and load the backend in another.

    ``/v1/health`` answers at once; ``/v1/ready`` once ``backend.load()`` is done.
    Keyword arguments override fields of ``config``.
    """
    from waitress.server import create_server

    refuse_in_a_starting_worker()
    config = config or ServiceConfig()
    for name, value in overrides.items():
        if not hasattr(config, name):
            raise TypeError(f"unknown service option {name!r}")
        setattr(config, name, value)
    _check_config(config)
    token, _ = resolve_token(
        config.token, config.host, config.allow_no_token_on_localhost
    )
    config.token = token
    if token is None and config.cors_origins:
        raise ValueError(CORS_WITHOUT_TOKEN)
    pool = ComputePool(
        workers=config.compute_workers,
        max_queued=config.max_queued,
        timeout_s=config.request_timeout_s,
    )
    store = ResultStore(
        max_items=config.max_results,
        max_bytes=config.max_result_bytes,
        ttl_s=config.result_ttl_s,
    )
    workers = _worker_pool(backend, config)
    app = create_app(
        backend,
        token=token,
        store=store,
        pool=pool,
        cors_origins=config.cors_origins,
        access_log=config.access_log,
    )
    try:
        server = _create_server(create_server, app, config)
    except OSError as e:
        pool.shutdown()
        why = (
            "ports below 1024 need privileges: choose another with --port"
            if e.errno == errno.EACCES and 0 < config.port < 1024
            else "is another service using that port? choose one with --port"
        )
        raise OSError(
            e.errno,
            f"cannot listen on {config.host}:{config.port}: {e.strerror or e} ({why})",
        ) from None
    _close_slow_requests(server, config.request_read_timeout_s)
    loader = threading.Thread(
        target=_load, args=(backend, workers), name="clipbranches-load", daemon=True
    )
    loader.start()
    return RunningService(server, app, backend, pool, token, loader, workers)._start()


def _proxy_options(trusted_proxy: str | None) -> dict:
    """waitress's options taking the client's address from ``trusted_proxy``'s
    ``X-Forwarded-For`` (its last hop)."""
    if not trusted_proxy:
        return {}
    return {
        "trusted_proxy": trusted_proxy,
        "trusted_proxy_count": 1,
        "trusted_proxy_headers": {"x-forwarded-for"},
    }


def _create_server(create_server, app, config: ServiceConfig):
    """Waitress's server of ``app`` bound to ``config``'s host and port."""
    return create_server(
        app,
        host=config.host,
        port=config.port,
        # a thread per request admitted to compute or to a save, besides
        # ``threads``: requests waiting for either never leave probes and pages
        # without a thread
        threads=config.threads
        + config.compute_workers
        + config.max_queued
        + SAVE_THREADS
        + SAVES_QUEUED,
        max_request_body_size=TRANSPORT_BODY_LIMIT,
        max_request_header_size=config.max_request_header_size,
        connection_limit=_connection_limit(config.connection_limit),
        channel_timeout=config.channel_timeout_s,
        cleanup_interval=config.cleanup_interval_s,
        # poll(), not select(): select() fails beyond 1024 descriptors.
        asyncore_use_poll=True,
        **_proxy_options(config.trusted_proxy),
        ident="clipbranches",
        clear_untrusted_proxy_headers=True,
    )


def _worker_pool(backend, config: ServiceConfig):
    """The compute worker processes of ``backend`` (not started), or None when
    computing in threads."""
    from fiftyone_clipbranches.service.workers import WorkerPool

    if config.compute_mode != "processes" or not hasattr(backend, "attach_workers"):
        return None
    workers = WorkerPool(
        "fiftyone_clipbranches.service.compute_worker:SdkWorker",
        (*backend.worker_args(), config.worker_threads),
        processes=config.compute_workers,
        timeout_s=config.request_timeout_s,
        nice=config.compute_nice,
    )
    backend.attach_workers(workers)
    return workers


def serve(
    host: str = "127.0.0.1",
    port: int = DEFAULT_PORT,
    threads: int = 8,
    token: str | None = None,
    allow_no_token_on_localhost: bool = False,
    *,
    datasets=None,
    backend=None,
    verify: str = "fast",
    recheck_s: float = 1.0,
    **options,
) -> int:
    """Serve the ``/v1`` API until SIGINT or SIGTERM; returns an exit status.

    Args:
        host: interface to bind (loopback by default).
        port: TCP port.
        threads: waitress worker threads.
        token: bearer token (default ``$CLIPBRANCHES_SERVICE_TOKEN``, else a
            generated one, printed once on standard output).
        allow_no_token_on_localhost: serve without a token (loopback hosts only).
        datasets: names of the datasets to serve (default: all with an index).
        backend: a ready-made backend (default: :class:`SdkBackend` of ``datasets``).
        verify: check of each index before it is served, ``"none"``, ``"fast"``
            or ``"full"``; an index failing it is logged and not served.
        recheck_s: how often, at most, the served datasets and indexes are
            compared with the database (deleted, updated, new), seconds.
        **options: further :class:`ServiceConfig` fields (``compute_workers``,
            ``request_timeout_s``, ...).
    """
    from fiftyone_clipbranches.service.backend import SdkBackend

    if backend is None:
        backend = SdkBackend(datasets, verify=verify, recheck_s=recheck_s)
    config = ServiceConfig(
        host=host,
        port=port,
        threads=threads,
        token=token,
        allow_no_token_on_localhost=allow_no_token_on_localhost,
    )
    given = "the command line" if token else f"${TOKEN_ENV}"
    generated = token is None and not os.environ.get(TOKEN_ENV)
    service = start_server(backend, config, **options)
    print(f"clipbranches service listening on {service.url}", flush=True)
    if service.token is None:
        print("authentication disabled (loopback only)", flush=True)
    elif generated:
        print(f"bearer token (generated): {service.token}", flush=True)
    else:
        print(f"bearer token: from {given}")
    sys.stdout.flush()

    stop = threading.Event()

    def _on_signal(signum, frame):
        stop.set()

    previous = {
        s: signal.signal(s, _on_signal) for s in (signal.SIGINT, signal.SIGTERM)
    }
    try:
        while not stop.is_set():
            stop.wait(0.5)
            error = getattr(backend, "load_error", None)
            if error is not None:
                print(f"clipbranches service: {error}", file=sys.stderr)
                return 1
    finally:
        service.stop()
        for s, handler in previous.items():
            signal.signal(s, handler)
        print("clipbranches service stopped", flush=True)
    return 0


def _connection_limit(wanted: int) -> int:
    """``wanted``, after raising this process's open-file limit to fit it (each
    connection is a descriptor); lower, with a warning, when the hard limit is
    too low."""
    try:
        import resource
    except ImportError:  # not on this platform: nothing to adjust
        return wanted
    reserve = 256  # database connections, index files, the listening sockets
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    needed = wanted + reserve
    if soft != resource.RLIM_INFINITY and soft < needed:
        target = needed if hard == resource.RLIM_INFINITY else min(needed, hard)
        try:
            resource.setrlimit(resource.RLIMIT_NOFILE, (target, hard))
            soft = target
        except (ValueError, OSError):
            pass
    if soft != resource.RLIM_INFINITY and soft < needed:
        limit = max(soft - reserve, 16)
        logger.warning(
            "connection_limit lowered from %d to %d: the open-file limit is %d; "
            "raise it (ulimit -n) to hold more connections",
            wanted,
            limit,
            soft,
        )
        return limit
    return wanted


def _close_slow_requests(server, timeout_s: float) -> None:
    """Make each listening server of ``server`` also close connections whose
    current request has been arriving for longer than ``timeout_s``.

    waitress's own ``channel_timeout`` counts idle time only, so a client sending
    one byte every few seconds holds its connection for ever; enough of them take
    every slot of ``connection_limit`` and nobody else is answered.
    """
    from waitress.server import BaseWSGIServer

    sockets_map = getattr(server, "_map", None) or getattr(server, "map", {})
    for listener in list(sockets_map.values()):
        if isinstance(listener, BaseWSGIServer):
            listener.maintenance = _SlowRequestReaper(listener, timeout_s)


class _SlowRequestReaper:
    """A listening server's ``maintenance``: waitress's, then slow requests."""

    def __init__(self, listener, timeout_s: float):
        self._listener = listener
        self._inherited = type(listener).maintenance.__get__(listener)
        self._timeout_s = timeout_s

    def __call__(self, now: float) -> None:
        self._inherited(now)
        for channel in list(self._listener.active_channels.values()):
            partial = channel.request
            if partial is None or channel.requests:
                continue
            seen = getattr(partial, "_clipbranches_first_seen", None)
            if seen is None:
                partial._clipbranches_first_seen = now
            elif now - seen > self._timeout_s:
                channel.will_close = True


def _load(backend, workers) -> None:
    """Load the backend while the worker processes start (both take seconds)."""
    if workers is not None:
        workers.start()
    try:
        backend.load()
    except Exception:
        logger.exception("loading the served indexes failed")


def _browser_origin(origin: str) -> str:
    """``origin`` as a browser sends it in ``Origin`` (lower case, no default
    port), or ``"*"``.

    Raises:
        ValueError: not a scheme and a host (with a port) and nothing else.
    """
    if origin == "*":
        return origin
    try:
        parts = urllib.parse.urlsplit(origin)
        port = parts.port
    except ValueError:
        parts, port = None, None
    if (
        parts is None
        or parts.scheme.lower() not in _DEFAULT_PORTS
        or not parts.hostname
        or parts.path
        or parts.query
        or parts.fragment
        or parts.username
    ):
        raise ValueError(
            "a CORS origin is a scheme and a host, with a port if it is not the"
            " scheme's ('https://app.example.org', 'http://localhost:8080'), or '*':"
            f" got {origin!r}"
        )
    scheme, host = parts.scheme.lower(), parts.hostname.lower()
    if ":" in host:
        host = f"[{host}]"
    shown_port = "" if port in (None, _DEFAULT_PORTS[scheme]) else f":{port}"
    return f"{scheme}://{host}{shown_port}"


def _check_config(config: ServiceConfig) -> None:
    if not isinstance(config.port, int) or not 0 <= config.port <= 65535:
        raise ValueError(f"port must be an int in [0, 65535], got {config.port!r}")
    for name in (
        "threads",
        "compute_workers",
        "worker_threads",
        "max_results",
        "max_result_bytes",
        "connection_limit",
        "channel_timeout_s",
        "request_read_timeout_s",
        "cleanup_interval_s",
        "max_request_header_size",
    ):
        value = getattr(config, name)
        if isinstance(value, bool) or not isinstance(value, int) or value < 1:
            raise ValueError(f"{name} must be an int >= 1, got {value!r}")
    if config.compute_mode not in ("processes", "threads"):
        raise ValueError(
            f"compute_mode must be 'processes' or 'threads', got {config.compute_mode!r}"
        )
    nice = config.compute_nice
    if isinstance(nice, bool) or not isinstance(nice, int) or not 0 <= nice <= 19:
        raise ValueError(f"compute_nice must be an int in [0, 19], got {nice!r}")
    origins = config.cors_origins
    origins = (origins,) if isinstance(origins, str) else tuple(origins)
    config.cors_origins = tuple(_browser_origin(str(o)) for o in origins)
    for name in ("request_timeout_s", "result_ttl_s"):
        value = getattr(config, name)
        if not isinstance(value, int | float) or not value > 0:
            raise ValueError(f"{name} must be a number > 0, got {value!r}")
    try:
        socket.getaddrinfo(config.host, None)
    except socket.gaierror as e:
        raise ValueError(f"cannot bind host {config.host!r}: {e}") from None
