"""The Flask application of the ``/v1`` API.

Every answer is JSON. Errors are ``{"error": {"code", "message"[, "details"]}}`` with
a stable code; unexpected exceptions are logged here and answered with a 500 that
carries no traceback. The backend (loaded indexes, the sdk calls) is shared
read-only by all request threads; the only mutable state, the result store and the
compute pool, lock internally.
"""

from __future__ import annotations

import hmac
import ipaddress
import json
import logging
import re
import time
import urllib.parse

from flask import Flask, Response, g, jsonify, request
from werkzeug.exceptions import HTTPException

from fiftyone_clipbranches.sdk.messages import http_phrased
from fiftyone_clipbranches.sdk.settings import DEFAULT_INDEX_KEY
from fiftyone_clipbranches.service import requests as rq
from fiftyone_clipbranches.service.compute import ComputePool
from fiftyone_clipbranches.service.errors import ApiError, ValidationError, not_found
from fiftyone_clipbranches.service.openapi import build_openapi
from fiftyone_clipbranches.service.results import Ranking, ResultStore, StoredResult
from fiftyone_clipbranches.service.schema import Int, Object

logger = logging.getLogger(__name__)
access_logger = logging.getLogger("fiftyone_clipbranches.service.access")

API_PREFIX = "/v1"
#: Threads saving results as views (apart from the compute pool's), and saves
#: that may wait for them beyond those (more get ``503 busy``).
SAVE_THREADS = 2
SAVES_QUEUED = 8
#: Endpoints answered without a token (probes and the API description).
PUBLIC_PATHS = frozenset({"/v1/health", "/v1/ready", "/v1/openapi.json"})

_HTTP_CODES = {
    400: "bad_request",
    401: "unauthorized",
    403: "forbidden",
    404: "not_found",
    405: "method_not_allowed",
    408: "request_timeout",
    413: "body_too_large",
    415: "unsupported_media_type",
    429: "too_many_requests",
}
#: An integer as a query parameter writes it; past _INT_DIGITS digits it is out
#: of any range the API takes.
_INT_TEXT = re.compile(r"-?[0-9]+")
_INT_DIGITS = 40
#: What a browser page of an allowed origin may send (``cors_origins``).
_CORS_METHODS = "GET, POST, DELETE"
_CORS_HEADERS = "Authorization, Content-Type"
_CORS_MAX_AGE_S = 600


def create_app(
    backend,
    *,
    token: str | None,
    store: ResultStore | None = None,
    pool: ComputePool | None = None,
    cors_origins=(),
    access_log: bool = False,
) -> Flask:
    """Build the WSGI application.

    Args:
        backend: object with ``is_ready()`` (and optionally ``not_ready_because()
            -> str | None``, said in ``/v1/ready``'s 503), ``list_datasets()``, ``dataset_info(name)``,
            ``index_info(name, key)``, ``search(req) -> Ranking``, ``refine(req) ->
            Ranking`` and ``save_view(result, name, overwrite) -> dict`` (see
            :class:`fiftyone_clipbranches.service.backend.SdkBackend`).
        token: bearer token every non-public request must carry; None disables
            authentication (the caller decides when that is safe).
        store: result store (default: a fresh :class:`ResultStore`).
        pool: compute pool for search and refine (default: a fresh one).
        cors_origins: origins (``"https://host[:port]"``) whose pages a browser
            lets call the API, ``"*"`` for any; none by default. The token is
            required all the same.
        access_log: log one INFO line per request answered (client address,
            method, path, status, milliseconds) to
            ``fiftyone_clipbranches.service.access``.
    """
    app = Flask("fiftyone_clipbranches.service")
    app.config["MAX_CONTENT_LENGTH"] = rq.MAX_BODY_BYTES
    app.json.sort_keys = False
    store = store if store is not None else ResultStore()
    pool = pool if pool is not None else ComputePool()
    # saves are database writes of milliseconds: their own threads, so that they do
    # not wait behind computations (up to the time limit) for a compute thread
    saves = ComputePool(
        workers=SAVE_THREADS, max_queued=SAVES_QUEUED, timeout_s=pool.timeout_s
    )
    token_bytes = token.encode() if token else None
    app.extensions["clipbranches"] = {
        "backend": backend,
        "store": store,
        "pool": pool,
        "saves": saves,
    }
    openapi_doc = build_openapi()
    allowed_origins = frozenset(cors_origins)

    def _allowed_origin() -> str | None:
        origin = request.headers.get("Origin")
        if origin and ("*" in allowed_origins or origin in allowed_origins):
            return origin
        return None

    if access_log:

        @app.before_request
        def _start_clock():
            g.started = time.perf_counter()

        @app.after_request
        def _log_access(response: Response) -> Response:
            started = g.get("started")
            ms = 0.0 if started is None else 1e3 * (time.perf_counter() - started)
            access_logger.info(
                "%s %s %s %d %.1f ms",
                # behind a --trusted-proxy, the client its X-Forwarded-For names
                # (the proxy's word: escaped like the path)
                logged_path(str(request.remote_addr)),
                request.method,
                # escaped: a path decodes to line breaks, NULs and terminal
                # escapes that forged lines and blinded a grep of the log
                logged_path(request.path),
                response.status_code,
                ms,
            )
            return response

    @app.before_request
    def _preflight():
        """A browser's CORS preflight, answered before authentication (it carries
        no token)."""
        if request.method != "OPTIONS" or not request.headers.get(
            "Access-Control-Request-Method"
        ):
            return None
        if _allowed_origin() is None:
            raise ApiError(
                403,
                "forbidden",
                f"origin {request.headers.get('Origin')!r} may not call this service"
                " from a browser: start it with --cors-origin ORIGIN",
            )
        response = Response(status=204)
        response.headers["Access-Control-Allow-Methods"] = _CORS_METHODS
        response.headers["Access-Control-Allow-Headers"] = _CORS_HEADERS
        response.headers["Access-Control-Max-Age"] = str(_CORS_MAX_AGE_S)
        return response

    @app.before_request
    def _loopback_names_only():
        """Without a token, only requests addressed to a loopback name or
        address: a page of another site whose name it points at 127.0.0.1 (DNS
        rebinding) reaches the port as its own origin, with no preflight."""
        if token_bytes is not None or is_loopback_host(request.host):
            return None
        raise ApiError(
            403,
            "forbidden",
            "this service runs without a token and answers only requests"
            " addressed to 127.0.0.1, ::1 or localhost (not"
            f" {request.host.rsplit(':', 1)[0]!r}); give it a token to reach it by"
            " another name",
        )

    def _given_token() -> bytes | None:
        """The bearer token the request carries, or None."""
        scheme, _, given = request.headers.get("Authorization", "").partition(" ")
        given = given.strip()
        return given.encode() if scheme.lower() == "bearer" and given else None

    def _carries_the_token() -> bool:
        given = _given_token()
        return token_bytes is None or (
            given is not None and hmac.compare_digest(given, token_bytes)
        )

    @app.before_request
    def _authenticate():
        if token_bytes is None or request.path in PUBLIC_PATHS:
            return None
        if _given_token() is None:
            sent = request.headers.get("Authorization", "").strip()
            scheme, _, credential = sent.partition(" ")
            # a scheme is a short word before its credential; a header of one
            # word may be the token itself, never to be sent back
            named = credential and re.fullmatch(r"[A-Za-z][A-Za-z-]{0,19}", scheme)
            missing = (
                f"the Authorization header is of scheme {scheme!r}, not a bearer token"
                if named and scheme.lower() != "bearer"
                else "the Authorization header does not start with 'Bearer '"
                if sent
                else "missing bearer token"
            )
            raise ApiError(
                401,
                "unauthorized",
                f"{missing}: send 'Authorization: Bearer <token>'",
            )
        if not _carries_the_token():
            raise ApiError(401, "unauthorized", "invalid bearer token")
        return None

    @app.after_request
    def _headers(response: Response) -> Response:
        response.headers["Cache-Control"] = "no-store"
        response.headers["X-Content-Type-Options"] = "nosniff"
        if response.status_code == 401:
            response.headers["WWW-Authenticate"] = 'Bearer realm="clipbranches"'
        if allowed_origins:
            response.headers.add("Vary", "Origin")
            origin = _allowed_origin()
            if origin is not None:
                response.headers["Access-Control-Allow-Origin"] = origin
                response.headers["Access-Control-Expose-Headers"] = "Retry-After"
        return response

    @app.errorhandler(ApiError)
    def _api_error(err: ApiError):
        if err.retry_after_s is None:
            return err.to_json(), err.status
        return err.to_json(), err.status, {"Retry-After": str(err.retry_after_s)}

    @app.errorhandler(HTTPException)
    def _http_error(err: HTTPException):
        status = err.code or 500
        code = _HTTP_CODES.get(status, "http_error")
        message = {
            404: "no such endpoint; see /v1/openapi.json",
            405: f"method {request.method} is not allowed here",
            413: f"request body exceeds {rq.MAX_BODY_BYTES} bytes"
            + (
                f" (labels of many samples: {rq.BY_TAGS_INSTEAD})"
                if request.path.rstrip("/").endswith("/refine")
                else ""
            ),
        }.get(status, err.description or err.name)
        response = jsonify({"error": {"code": code, "message": message}})
        response.status_code = status
        if status == 405 and err.valid_methods:
            response.headers["Allow"] = ", ".join(err.valid_methods)
        return response

    @app.errorhandler(Exception)
    def _unexpected(err: Exception):
        logger.exception(
            "unexpected error on %s %s", request.method, logged_path(request.path)
        )
        return {
            "error": {
                "code": "internal_error",
                "message": "internal server error; the server log has the details",
            }
        }, 500

    @app.get(f"{API_PREFIX}/health")
    def health():
        _no_query()
        return {"status": "ok"}

    @app.get(f"{API_PREFIX}/ready")
    def ready():
        _no_query()
        # a probe without the token learns why in general words, not dataset
        # names, index keys or the database's address
        authorized = _carries_the_token()
        public = getattr(backend, "public_not_ready_because", None)
        because = getattr(backend, "not_ready_because", None)
        if not authorized and public is not None:
            because = public
        why = because() if because else None if backend.is_ready() else ""
        if why and because is not public and not authorized:
            why = "not ready; a request carrying the token is told why"
        if why is not None:  # asked once: each call may check the database
            raise ApiError(
                503,
                "not_ready",
                why or "the service is still starting; retry shortly",
                retry_after_s=2,
            )
        answer = {"status": "ready", "indexes": backend.n_indexes()}
        if authorized:  # the results held: the operator's, not anyone's
            answer["results"] = store.stats()
        return answer

    @app.get(f"{API_PREFIX}/openapi.json")
    def openapi():
        _no_query()
        return openapi_doc

    @app.get(f"{API_PREFIX}/datasets")
    def datasets():
        _no_query()
        return {"datasets": backend.list_datasets()}

    # path: FiftyOne names may hold "/" (sent as %2F, which the server decodes)
    @app.get(f"{API_PREFIX}/datasets/<path:name>")
    def dataset(name):
        _no_query()
        rq.DATASET_NAME.validate(name, "dataset")
        return backend.dataset_info(name)

    @app.get(f"{API_PREFIX}/datasets/<path:name>/indexes/<key>")
    def index(name, key):
        _no_query()
        rq.DATASET_NAME.validate(name, "dataset")
        rq.INDEX_KEY.validate(key, "index_key")
        return backend.index_info(name, key)

    @app.post(f"{API_PREFIX}/search")
    def search():
        req = _json_body(rq.SEARCH)
        return _compute_and_store("search", backend.search, req)

    @app.post(f"{API_PREFIX}/refine")
    def refine():
        req = _json_body(rq.REFINE)
        return _compute_and_store("refine", backend.refine, req)

    @app.post(f"{API_PREFIX}/next_to_label")
    def next_to_label():
        req = _json_body(rq.NEXT_TO_LABEL)
        seen = None if req["exclude_result"] is None else _stored(req["exclude_result"])

        def answer(body: dict) -> Ranking:
            return backend.next_to_label(body, seen)

        return _compute_and_store("next_to_label", answer, req)

    @app.get(f"{API_PREFIX}/results/<result_id>")
    def result_page(result_id):
        query = _query(rq.PAGE_QUERY)
        result = _stored(result_id)
        check = getattr(backend, "check_result", None)
        if check is not None:
            check(result)
        return _page(result, query["offset"], query["limit"])

    @app.delete(f"{API_PREFIX}/results/<result_id>")
    def result_delete(result_id):
        _no_query()
        rq.RESULT_ID.validate(result_id, "result_id")
        if not store.delete(result_id):
            raise _result_not_found(result_id, store.why_missing(result_id))
        return {"deleted": result_id}

    @app.post(f"{API_PREFIX}/results/<result_id>/save")
    def result_save(result_id):
        req = _json_body(rq.SAVE_VIEW)
        result = _stored(result_id)
        return saves.run(backend.save_view, result, req["name"], req["overwrite"])

    def _compute_and_store(kind: str, fn, req: dict):
        start = time.perf_counter()
        if req["index_key"] is None:  # left out: the default, or the only index
            key_for = getattr(backend, "default_index_key", None)
            req["index_key"] = key_for(req["dataset"]) if key_for else DEFAULT_INDEX_KEY
        ranking: Ranking = pool.run(fn, req)
        result = store.put(kind, req["dataset"], req["index_key"], ranking, req)
        body = _page(result, 0, req["page_size"])
        stats = dict(ranking.stats)
        if stats.get("warning"):  # the SDK's words, in the API's
            stats["warning"] = http_phrased(stats["warning"])
        timings = dict(stats.pop("timings", {}))
        timings["total_s"] = round(time.perf_counter() - start, 6)
        body["timings"] = timings
        body["stats"] = stats
        return body

    def _stored(result_id: str) -> StoredResult:
        rq.RESULT_ID.validate(result_id, "result_id")
        result = store.get(result_id)
        if result is None:
            raise _result_not_found(result_id, store.why_missing(result_id))
        return result

    return app


#: What the access log leaves unescaped of a request path.
_LOGGED_SAFE = "/:@!$&'()*+,;=-._~"


def logged_path(path: str) -> str:
    """A request path as the log shows it: escaped, so that it cannot forge log
    lines (a line break) or reach a terminal (an escape)."""
    return urllib.parse.quote(path, safe=_LOGGED_SAFE)


def is_loopback(name: str) -> bool:
    """Whether a host name or address is ``localhost`` or a loopback address (an
    IPv4 one written as IPv6 too)."""
    name = name.strip().lower()
    if name in ("localhost", "localhost."):
        return True
    try:
        address = ipaddress.ip_address(name)
    except ValueError:
        return False
    mapped = getattr(address, "ipv4_mapped", None)
    return (mapped or address).is_loopback


def is_loopback_host(host: str) -> bool:
    """Whether an HTTP ``Host`` value (``name[:port]``, ``[v6][:port]``) names a
    loopback address or ``localhost``."""
    name, port = host.strip(), ""
    if name.startswith("["):
        end = name.find("]")
        if end < 0:
            return False
        name, port = name[1:end], name[end + 1 :]
        if port and not port.startswith(":"):
            return False
        port = port[1:]
    elif name.count(":") == 1:
        name, port = name.split(":", 1)
    return (not port or port.isdigit()) and is_loopback(name)


def _page(result: StoredResult, offset: int, limit: int) -> dict:
    total = len(result.ranking)
    items = result.ranking.page(offset, limit)
    end = offset + len(items)
    return {
        "result_id": result.result_id,
        "kind": result.kind,
        "dataset": result.dataset,
        "index_key": result.index_key,
        "total": total,
        "offset": offset,
        "items": items,
        "next_offset": end if end < total else None,
    }


def _result_not_found(result_id: str, why: str) -> ApiError:
    return not_found(
        "result_not_found", f"no result {result_id!r}: {why}; run the query again"
    )


def _reject_constant(name: str):
    raise ValueError(f"{name} is not valid JSON")


def _reject_duplicates(pairs):
    out = {}
    for key, value in pairs:
        if key in out:
            raise ValueError(f"duplicate key {key!r}")
        out[key] = value
    return out


def _json_body(schema: Object) -> dict:
    _no_query()
    if request.mimetype != "application/json":
        raise ApiError(
            415,
            "unsupported_media_type",
            f"send a JSON body with 'Content-Type: application/json' "
            f"(got {request.content_type or 'none'!r})",
        )
    raw = request.get_data(cache=False)
    try:
        text = raw.decode("utf-8")
        body = json.loads(
            text,
            parse_constant=_reject_constant,
            parse_int=_bounded_int,
            object_pairs_hook=_reject_duplicates,
        )
    except (UnicodeDecodeError, ValueError, RecursionError) as e:
        raise ApiError(
            400, "invalid_json", f"request body is not valid JSON: {e}"
        ) from None
    return schema.validate(body, "")


def _bounded_int(digits: str) -> int:
    """A JSON integer; one of hundreds of digits is no count, id or seed (Python's
    own refusal told the client to call sys.set_int_max_str_digits)."""
    if len(digits.lstrip("-")) > 100:
        raise ValueError(f"a number of {len(digits.lstrip('-'))} digits")
    return int(digits)


def _no_query() -> None:
    if request.args:
        raise ValidationError(
            "query", f"unknown query parameter(s) {sorted(request.args)}"
        )


def _query(schema: Object) -> dict:
    unknown = sorted(set(request.args) - set(schema.props))
    if unknown:
        raise ValidationError(
            "query",
            f"unknown parameter(s) {unknown}; allowed: {sorted(schema.props)}",
        )
    raw = {}
    for key, values in request.args.lists():
        if len(values) != 1:
            raise ValidationError(key, "must be given once")
        raw[key] = values[0]
    converted = {}
    for key, value in raw.items():
        prop = schema.props.get(key)
        if prop is not None and isinstance(prop.schema, Int):
            if not _INT_TEXT.fullmatch(value):
                raise ValidationError(key, f"must be an integer, got {value!r}")
            if len(value.lstrip("-")) > _INT_DIGITS:
                limits = ((">=", prop.schema.minimum), ("<=", prop.schema.maximum))
                bounds = [f"{op} {v}" for op, v in limits if v is not None]
                raise ValidationError(
                    key,
                    f"must be {' and '.join(bounds) or 'smaller'}, got a number of"
                    f" {len(value.lstrip('-'))} digits",
                )
            converted[key] = int(value)
        else:
            converted[key] = value
    return schema.validate(converted, "")
