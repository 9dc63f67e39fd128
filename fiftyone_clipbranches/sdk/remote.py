"""Refinement on a remote clipbranches service, and where a face's refinement runs.

:class:`Client` wraps each endpoint of the ``/v1`` API (HTTP by the standard
library). :func:`refine_here_or_remote` is the one place that decides where a
refinement runs: on the service when :func:`service_settings` finds one
(``CLIPBRANCHES_SERVICE_URL`` and ``CLIPBRANCHES_SERVICE_TOKEN`` in a FiftyOne
``ctx.secrets`` mapping or the environment), else in this process; either way the
scores and views are written here and the stats have the same keys.
"""

from __future__ import annotations

import json
import math
import os
import random
import time
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field

from fiftyone_clipbranches.sdk.errors import ClipBranchesError, ContradictoryLabelsError
from fiftyone_clipbranches.sdk.media import require_image_samples
from fiftyone_clipbranches.sdk.messages import result_repr
from fiftyone_clipbranches.sdk.request import RefineRequest
from fiftyone_clipbranches.sdk.rowmap import as_sample_ids
from fiftyone_clipbranches.sdk.settings import DEFAULT_SCORE_FIELD

URL_ENV = "CLIPBRANCHES_SERVICE_URL"
TOKEN_ENV = "CLIPBRANCHES_SERVICE_TOKEN"
_PAGE = 10_000
#: Refusals that are only for now (answered with ``Retry-After``): retried.
_RETRIED_CODES = ("busy", "not_ready")
#: Longest wait before one retry, whatever ``Retry-After`` says.
_MAX_RETRY_WAIT_S = 10.0


class RemoteServiceError(ClipBranchesError):
    """An error answered by the service (or a failure to reach it).

    Attributes:
        status: HTTP status (0 when the service could not be reached).
        code: the service's stable error code (``"unreachable"`` when status is 0).
        message: the service's message.
        details: extra data of the error, if any.
    """

    def __init__(self, status: int, code: str, message: str, details=None):
        where = f"HTTP {status}, {code}" if status else "unreachable"
        super().__init__(f"{message} (clipbranches service: {where})")
        self.status = status
        self.code = code
        self.message = message
        self.details = details


#: The name this error had when the client lived in ``service.client``.
ServiceError = RemoteServiceError


def checked_token(token: str) -> str:
    """``token`` if an HTTP header can carry it (visible ASCII characters: an
    ``Authorization`` header holds no other), else ``ValueError``."""
    if not token or not all("!" <= c <= "~" for c in token):
        raise ValueError(
            "the service token must be visible ASCII characters only (letters,"
            " digits, punctuation; no spaces or line breaks), as an HTTP header"
            " carries it; generate one with `python -c 'import secrets;"
            " print(secrets.token_urlsafe(32))'`"
        )
    return token


class _NoRedirects(urllib.request.HTTPRedirectHandler):
    """A service never redirects: a redirect is answered as the error it is (the
    token would follow it to another host)."""

    def redirect_request(self, req, fp, code, msg, headers, newurl):
        return None


_OPENER = urllib.request.build_opener(_NoRedirects)


class Client:
    """Client of a clipbranches service.

    Args:
        url: base URL, e.g. ``"http://127.0.0.1:5152"`` (a trailing ``/v1`` is
            the API's prefix, which the client adds itself, and is dropped).
        token: bearer token, or None for a service running without one.
        timeout_s: socket timeout of each request.
        retries: times a request refused for now (503 ``busy``: every worker and
            queue slot taken; ``not_ready``: indexes still loading) is sent again,
            after the ``Retry-After`` the service asks for times the retry's
            number (at most 10 s), and up to half as long again at random (so
            at most 15 s), so that clients refused together do not all come
            back at once; 0 to get the refusal at once.
    """

    def __init__(
        self,
        url: str,
        token: str | None = None,
        timeout_s: float = 120.0,
        retries: int = 3,
    ):
        parsed = urllib.parse.urlsplit(url)
        if parsed.scheme not in ("http", "https") or not parsed.netloc:
            raise ValueError(
                f"service url must look like http://host:port, got {url!r}"
            )
        if isinstance(retries, bool) or not isinstance(retries, int) or retries < 0:
            raise ValueError(f"retries must be an int >= 0, got {retries!r}")
        base = url.rstrip("/")
        # the API's prefix is the client's own: a URL copied from a request works
        self.url = base[: -len("/v1")] if base.endswith("/v1") else base
        token = (token or "").strip()  # "" (an unset variable's default): none
        self.token = checked_token(token) if token else None
        self.timeout_s = float(timeout_s)
        self.retries = retries

    def health(self) -> dict:
        return self._call("GET", "/v1/health")

    def ready(self) -> dict:
        """``/v1/ready`` at once (a probe: a 503 ``not_ready`` is not retried)."""
        return self._call("GET", "/v1/ready", retry=False)

    def openapi(self) -> dict:
        return self._call("GET", "/v1/openapi.json")

    def datasets(self) -> list[dict]:
        return self._call("GET", "/v1/datasets")["datasets"]

    def dataset(self, name: str) -> dict:
        return self._call("GET", f"/v1/datasets/{_quote(name)}")

    def index(self, name: str, key: str) -> dict:
        return self._call("GET", f"/v1/datasets/{_quote(name)}/indexes/{_quote(key)}")

    def search(
        self,
        dataset: str,
        text: str | None = None,
        *,
        sample_ids=None,
        k: int = 60,
        index_key: str | None = None,
        page_size: int = 100,
    ) -> dict:
        """Search ``dataset`` by ``text`` or by ``sample_ids``; ``index_key`` None:
        the service's choice (``clipbranches``, else the dataset's only index)."""
        body = {"dataset": dataset, "k": k, "page_size": page_size}
        if index_key is not None:
            body["index_key"] = index_key
        if text is not None:
            body["text"] = text
        if sample_ids is not None:
            body["sample_ids"] = _id_list(sample_ids, "sample_ids")
        return self._call("POST", "/v1/search", body)

    def refine(
        self,
        dataset: str,
        request: RefineRequest | None = None,
        *,
        page_size: int = 100,
        **fields,
    ) -> dict:
        """Refine on labelled samples of ``dataset``: a :class:`RefineRequest`, or
        its fields as keywords (labels by ids, or from the tags when neither
        ``positives`` nor ``negatives`` is given). Without a request or an
        ``index_key`` the service chooses the index, as for :meth:`search`."""
        body = {"dataset": dataset, **RefineRequest.build(request, **fields).to_json()}
        body["page_size"] = page_size
        return self._call("POST", "/v1/refine", body)

    def next_to_label(
        self,
        dataset: str,
        *,
        exclude_result: str | None = None,
        exclude=None,
        k: int = 60,
        positives=None,
        negatives=None,
        positive_tag: str | None = None,
        negative_tag: str | None = None,
        index_key: str | None = None,
        page_size: int = 100,
    ) -> dict:
        """The ``k`` samples to label next (``sdk.next_to_label``): nearest the
        labelled positives, neither labelled nor in the stored result
        ``exclude_result`` (a :meth:`refine`'s ``result_id``) or ``exclude`` (ids).
        Labels by ids, else from the tags (``cb_positive`` / ``cb_negative`` unless
        named); ``index_key`` None: the service's choice, as for :meth:`search`."""
        body = {"dataset": dataset, "k": k, "page_size": page_size}
        given = {
            "exclude_result": exclude_result,
            "exclude": _id_list(exclude, "exclude"),
            "positives": _id_list(positives, "positives"),
            "negatives": _id_list(negatives, "negatives"),
            "positive_tag": positive_tag,
            "negative_tag": negative_tag,
            "index_key": index_key,
        }
        body.update({name: v for name, v in given.items() if v is not None})
        return self._call("POST", "/v1/next_to_label", body)

    def page(self, result_id: str, offset: int = 0, limit: int = 100) -> dict:
        query = urllib.parse.urlencode({"offset": offset, "limit": limit})
        return self._call("GET", f"/v1/results/{_quote(result_id)}?{query}")

    def iter_items(self, result_id: str, page_size: int = _PAGE) -> Iterator[dict]:
        """Every ``{"id", "score"}`` item of a stored result, page by page."""
        offset = 0
        while offset is not None:
            page = self.page(result_id, offset, page_size)
            yield from page["items"]
            offset = page["next_offset"]

    def delete_result(self, result_id: str) -> dict:
        return self._call("DELETE", f"/v1/results/{_quote(result_id)}")

    def save_view(self, result_id: str, name: str, overwrite: bool = False) -> dict:
        body = {"name": name, "overwrite": overwrite}
        return self._call("POST", f"/v1/results/{_quote(result_id)}/save", body)

    def _call(
        self, method: str, path: str, body: dict | None = None, retry: bool = True
    ) -> dict:
        data = None
        headers = {"Accept": "application/json"}
        if body is not None:
            data = json.dumps(body).encode()
            headers["Content-Type"] = "application/json"
        if self.token:
            headers["Authorization"] = f"Bearer {self.token}"
        req = urllib.request.Request(
            self.url + path, data=data, headers=headers, method=method
        )
        retried = 0
        while True:
            try:
                with _OPENER.open(req, timeout=self.timeout_s) as resp:
                    return json.loads(resp.read())
            except urllib.error.HTTPError as e:
                error = _service_error(e)
                again = retry and error.code in _RETRIED_CODES
                if not again or retried >= self.retries:
                    raise error from None
                retried += 1
                # later retries wait longer, and clients refused together spread out
                wait = _retry_wait(e.headers.get("Retry-After")) * retried
                time.sleep(min(wait, _MAX_RETRY_WAIT_S) * random.uniform(1.0, 1.5))
            except (urllib.error.URLError, OSError) as e:
                raise RemoteServiceError(
                    0, "unreachable", f"cannot reach {self.url}: {e}"
                ) from None


def _id_list(ids, what: str) -> list[str] | None:
    """Sample ids as a JSON list, from what the SDK takes for them (one id, ids, an
    array, samples, a view); None stays None."""
    return None if ids is None else as_sample_ids(ids, what)


def _retry_wait(header: str | None) -> float:
    """Seconds to wait before a retry: ``Retry-After`` (delay seconds), within
    ``[0, _MAX_RETRY_WAIT_S]``; 1 s when absent or not a number."""
    try:
        seconds = float(header)
    except (TypeError, ValueError):
        return 1.0
    return min(max(seconds, 0.0), _MAX_RETRY_WAIT_S) if math.isfinite(seconds) else 1.0


def _quote(part: str) -> str:
    return urllib.parse.quote(str(part), safe="")


def _service_error(e: urllib.error.HTTPError) -> RemoteServiceError:
    if 300 <= e.code < 400:
        where = e.headers.get("Location", "elsewhere")
        return RemoteServiceError(
            e.code,
            "redirect",
            f"the service answered a redirect to {where}: the client follows none"
            " (the token would go along); give the URL of the service itself",
        )
    raw = e.read()
    try:
        err = json.loads(raw)["error"]
        return RemoteServiceError(
            e.code, err["code"], err["message"], err.get("details")
        )
    except (ValueError, KeyError, TypeError):
        text = raw.decode("utf-8", "replace")[:200]
        return RemoteServiceError(e.code, "http_error", text or e.reason)


def service_settings(secrets: Mapping | None = None) -> tuple[str, str | None] | None:
    """``(url, token)`` of the configured remote service, or None when there is none.

    Looks in ``secrets`` first (e.g. a FiftyOne operator's ``ctx.secrets``), then in
    the environment (``CLIPBRANCHES_SERVICE_URL``, ``CLIPBRANCHES_SERVICE_TOKEN``).
    """
    secrets = secrets or {}
    url = secrets.get(URL_ENV) or os.environ.get(URL_ENV)
    if not url:
        return None
    token = secrets.get(TOKEN_ENV) or os.environ.get(TOKEN_ENV) or None
    return url, token


@dataclass
class RemoteRefineResult:
    """What :func:`remote_refine` returns.

    Attributes:
        result_id: id of the result kept by the service (for paging or saving).
        total: number of samples the model classifies positive.
        ids: sample ids, best first (all of them, or the first ``max_items``).
        scores: their scores.
        timings: seconds, as measured by the service (``total_s``: the request).
        stats: the stats of ``sdk.refine_ranking`` (same keys).
    """

    result_id: str
    total: int
    ids: list[str]
    scores: list[float]
    timings: dict = field(default_factory=dict)
    stats: dict = field(default_factory=dict)

    def __repr__(self) -> str:
        return result_repr(
            self, self.total, self.scores, f"{len(self.ids)} in .ids, .result_id"
        )


def remote_refine(
    dataset: str,
    positives=None,
    negatives=None,
    *,
    request: RefineRequest | None = None,
    max_items: int | None = None,
    url: str | None = None,
    token: str | None = None,
    secrets: Mapping | None = None,
    **fields,
) -> RemoteRefineResult:
    """Refine on a remote service.

    Args:
        dataset: dataset name (the service and the caller share the database).
        positives, negatives, fields: the refinement's fields, as ``sdk.refine``'s
            (``tags``, ``model``, ``random_negatives``, ...); or ``request``.
        max_items: fetch at most this many ranked ids (None: all of them).
        url, token: the service; default :func:`service_settings` (``secrets``, env).

    Raises:
        ValueError: no service url given or configured, or a request field the
            service does not take.
        RemoteServiceError: the service refused the request or could not be reached.
    """
    request = RefineRequest.build(
        request, positives=positives, negatives=negatives, **fields
    )
    if url is None:
        settings = service_settings(secrets)
        if settings is None:
            raise ValueError(
                f"no clipbranches service configured: set {URL_ENV} (and {TOKEN_ENV})"
                " or pass url="
            )
        url, env_token = settings
        token = token if token is not None else env_token
    client = Client(url, token)
    first_page = _PAGE if max_items is None else max(1, min(_PAGE, max_items))
    body = client.refine(dataset, request, page_size=first_page)
    limit = body["total"] if max_items is None else min(max_items, body["total"])
    items = list(body["items"])
    offset = body["next_offset"]
    while offset is not None and len(items) < limit:
        page = client.page(body["result_id"], offset, min(_PAGE, limit - len(items)))
        items.extend(page["items"])
        offset = page["next_offset"]
    items = items[:limit]
    return RemoteRefineResult(
        result_id=body["result_id"],
        total=body["total"],
        ids=[it["id"] for it in items],
        scores=[it["score"] for it in items],
        timings=body.get("timings", {}),
        stats=body.get("stats", {}),
    )


def refine_here_or_remote(
    dataset,
    request: RefineRequest,
    *,
    score_field: str | None = DEFAULT_SCORE_FIELD,
    saved_view: str | None = None,
    secrets: Mapping | None = None,
    k_preview: int | None = None,
    write_in_background: bool = False,
):
    """Refine ``dataset`` on the configured service, else in this process.

    With a service configured (:func:`service_settings` of ``secrets``), the
    service trains and queries and this process writes the returned scores and
    views (``sdk.apply_refine_result``); otherwise ``sdk.refine``. Both return a
    ``RefineResult`` with the same ids, scores and stats keys; a remote one's stats
    also hold ``service_url``. ``k_preview`` and ``write_in_background`` are
    ``sdk.refine``'s (the panel shows the best results at once and lets the score
    field be written behind it).

    Raises:
        ValueError: the model needs a text query and the request has none; as
            ``sdk.refine`` otherwise (``RemoteServiceError`` for the service's
            refusals).
    """
    from fiftyone_clipbranches.sdk.refine import refine, written_result
    from fiftyone_clipbranches.sdk.runs import root_dataset
    from fiftyone_clipbranches.sdk.views import check_writable

    spec = request.spec
    if spec.needs_query and request.query is None:
        error = ValueError(
            f"model {spec.name!r} refines a text search: pass the text query that"
            " was searched"
        )
        error.in_app = (
            f"{spec.label.split(' (')[0]} refines a text search: type the text that"
            " was searched in the query box (Text, or an image path or URL), then"
            " Refine again"
        )
        raise error
    remote = service_settings(secrets)
    if remote is None:
        return refine(
            dataset,
            score_field=score_field,
            saved_view=saved_view,
            k_preview=k_preview,
            request=request,
            write_in_background=write_in_background,
        )
    url, token = remote
    ds = root_dataset(dataset)
    require_image_samples(dataset, ds)
    check_writable(ds, score_field, saved_view)  # refused before the service works
    try:
        answer = remote_refine(ds.name, request=request, url=url, token=token)
    except RemoteServiceError as e:
        ids = (e.details or {}).get("ids") if isinstance(e.details, dict) else None
        if e.code == "contradictory_labels" and ids:  # as here: the App shows them
            raise ContradictoryLabelsError(e.message, ids=ids) from e
        if e.code != "unreachable":
            raise
        raise RemoteServiceError(
            0,
            "unreachable",
            f"{e.message}. The {URL_ENV} setting (a plugin secret or the"
            " environment) sends refinements to that service: start it (clipbranches"
            " serve), or remove the setting to refine in this process",
        ) from None
    ids, scores, stats = answer.ids, answer.scores, answer.stats
    if dataset is not ds:  # the service ranks the dataset: keep the view's part
        ids, scores, stats = _inside_view(dataset, ids, scores, stats)
    result = written_result(
        dataset,
        ids,
        scores,
        stats,
        score_field,
        saved_view,
        k_preview,
        write_in_background=write_in_background,
    )
    result.stats["service_url"] = url
    return result


def _inside_view(view, ids, scores, stats: dict):
    """The part of a dataset's ranking inside ``view`` (as ``sdk.refine`` of a view
    answers), with its counts (``n_forced_pos`` and ``n_dropped_neg`` stay the
    dataset's: which labelled samples the model rejected or accepted is not
    sent)."""
    inside = set(view.values("id"))
    keep = [i for i, sample_id in enumerate(ids) if sample_id in inside]
    stats = {**stats, "n_results": len(keep), "n_index": len(inside)}
    return [ids[i] for i in keep], [scores[i] for i in keep], stats
