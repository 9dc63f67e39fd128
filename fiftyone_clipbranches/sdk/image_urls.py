"""Fetching the image an ``http(s)://`` query names (the panel's query box, run
by the App's server for whoever types the URL), within limits: its size, its
time in all, its redirects, and never from a cloud machine's metadata service
(the address connected to is checked, so a name that resolves one way for a
check and another for the fetch gets nowhere)."""

from __future__ import annotations

import contextlib
import http.client
import ipaddress
import socket
import threading
import urllib.error
import urllib.parse
import urllib.request

#: Largest image a query may download.
MAX_IMAGE_DOWNLOAD_BYTES = 50 * 2**20
#: Seconds one read may wait, and the whole download (connection, redirects and
#: headers included) may take.
URL_TIMEOUT_S = 10.0
URL_TOTAL_S = 30.0
#: Redirects a query's URL may take.
MAX_URL_REDIRECTS = 3
#: Metadata services of cloud machines outside the link-local range.
METADATA_ADDRESSES = frozenset(
    ipaddress.ip_address(a) for a in ("fd00:ec2::254", "100.100.100.200")
)


class RefusedURL(ValueError):
    """A URL an image query does not fetch."""


def refused_address(address: str) -> bool:
    """Whether a query may not fetch from ``address`` (an IP, maybe with a zone):
    link-local (169.254.169.254), a known metadata address, unspecified or
    multicast; an IPv4 address written as IPv6 is judged as itself."""
    ip = ipaddress.ip_address(address.split("%", 1)[0])
    mapped = getattr(ip, "ipv4_mapped", None)
    if mapped is not None:
        ip = mapped
    return (
        ip.is_link_local
        or ip.is_unspecified
        or ip.is_multicast
        or ip in METADATA_ADDRESSES
    )


def download(url: str) -> bytes:
    """The bytes at ``url`` (http or https).

    Raises:
        RefusedURL: not http(s), no valid URL, or an address queries do not fetch
            from (the server connected to, or a redirect's).
        ValueError: it could not be fetched in time, or is too large.
    """
    _check_url(url)
    fetch = _Fetch()
    watchdog = threading.Timer(URL_TOTAL_S, fetch.stop)
    watchdog.daemon = True
    watchdog.start()
    chunks, size = [], 0
    try:
        with fetch.opener.open(url, timeout=URL_TIMEOUT_S) as response:
            while size <= MAX_IMAGE_DOWNLOAD_BYTES:
                chunk = response.read1(1 << 16)
                if not chunk:
                    break
                chunks.append(chunk)
                size += len(chunk)
    except RefusedURL:
        raise
    except (OSError, ValueError, http.client.HTTPException) as exc:
        if fetch.stopped:
            raise ValueError(
                f"could not fetch {url}: not downloaded within {URL_TOTAL_S:g} s;"
                " download the image and give its file path"
            ) from None
        reason = getattr(exc, "reason", None) or exc
        if isinstance(reason, RefusedURL):
            raise reason from None
        raise ValueError(
            f"could not fetch {url} ({reason}); this machine may be offline: "
            "download the image and give its file path"
        ) from None
    finally:
        watchdog.cancel()
    if fetch.stopped:
        raise ValueError(
            f"could not fetch {url}: not downloaded within {URL_TOTAL_S:g} s"
        )
    data = b"".join(chunks)
    if len(data) > MAX_IMAGE_DOWNLOAD_BYTES:
        raise ValueError(
            f"{url} is larger than {MAX_IMAGE_DOWNLOAD_BYTES // 2**20} MiB: "
            "download it, downscale it and give its file path"
        )
    return data


def _check_url(url: str) -> None:
    try:
        parsed = urllib.parse.urlsplit(url)
        parsed.port  # noqa: B018 - raises for a port out of range
    except ValueError as e:
        raise RefusedURL(f"{url!r} is no valid URL ({e})") from None
    if parsed.scheme.lower() not in ("http", "https") or not parsed.hostname:
        raise RefusedURL(f"an image URL must be http:// or https://; got {url!r}")


def _refuse_host(host: str, port: int) -> None:
    """Refuse ``host`` when an address it resolves to is one queries do not fetch
    from (a name that cannot be resolved is left to the connection to say)."""
    try:
        infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)
    except (OSError, UnicodeError):
        return
    for info in infos:
        if refused_address(info[4][0]):
            raise RefusedURL(
                f"{host} is at {info[4][0]}, a link-local or metadata address that"
                " image queries do not fetch from: download the image and give its"
                " path"
            )


class _Fetch:
    """One download's opener, whose connections check the address they reach and
    register their sockets, so that the watchdog can end them all."""

    def __init__(self):
        self.sockets: list[socket.socket] = []
        self.stopped = False
        self._lock = threading.Lock()
        fetch = self

        def checked(base):
            class Checked(base):
                def connect(self):
                    _refuse_host(self.host, self.port)  # before: no packet sent
                    super().connect()
                    fetch.opened(self.sock, self.host)  # after: what was reached

            return Checked

        http_conn = checked(http.client.HTTPConnection)
        https_conn = checked(http.client.HTTPSConnection)

        class HTTP(urllib.request.HTTPHandler):
            def http_open(self, req):
                return self.do_open(http_conn, req)

        class HTTPS(urllib.request.HTTPSHandler):
            def https_open(self, req):
                return self.do_open(https_conn, req, context=self._context)

        class Redirects(urllib.request.HTTPRedirectHandler):
            max_redirections = MAX_URL_REDIRECTS

            def redirect_request(self, req, fp, code, msg, headers, newurl):
                _check_url(newurl)
                return super().redirect_request(req, fp, code, msg, headers, newurl)

        self.opener = urllib.request.build_opener(HTTP, HTTPS, Redirects)

    def opened(self, sock: socket.socket, host: str) -> None:
        peer = sock.getpeername()[0]
        if refused_address(peer):
            sock.close()
            raise RefusedURL(
                f"{host} is at {peer}, a link-local or metadata address that image"
                " queries do not fetch from: download the image and give its path"
            )
        with self._lock:
            if self.stopped:
                sock.close()
                raise TimeoutError("the download's time is up")
            self.sockets.append(sock)

    def stop(self) -> None:
        """End every connection of the download (a read waiting wakes up)."""
        with self._lock:
            self.stopped = True
            sockets = list(self.sockets)
        for sock in sockets:
            with contextlib.suppress(OSError):  # closed already
                sock.shutdown(socket.SHUT_RDWR)
