"""Names shared by the service tests, and raw HTTP against the service."""

from __future__ import annotations

import http.client
import json
import urllib.parse

import psutil

DATASET = "clipbranches-service-test"
TOKEN = "test-token-0123456789abcdef"
POS_TAG, NEG_TAG = "cb_positive", "cb_negative"
#: The origin whose browser pages the session's service lets call it.
CORS_ORIGIN = "https://app.example.org"


class Http:
    """Raw HTTP against the service: ``(status, headers, parsed JSON body)``."""

    def __init__(self, url: str, token: str | None):
        parsed = urllib.parse.urlsplit(url)
        self.host, self.port = parsed.hostname, parsed.port
        self.token = token

    def __call__(
        self,
        method: str,
        path: str,
        body=None,
        *,
        raw: bytes | None = None,
        content_type: str | None = "application/json",
        headers: dict | None = None,
        auth: bool = True,
    ):
        conn = http.client.HTTPConnection(self.host, self.port, timeout=120)
        hdrs = dict(headers or {})
        if auth and self.token:
            hdrs.setdefault("Authorization", f"Bearer {self.token}")
        data = raw
        if body is not None:
            data = json.dumps(body).encode()
        if data is not None and content_type is not None:
            hdrs["Content-Type"] = content_type
        try:
            conn.request(method, path, body=data, headers=hdrs)
            resp = conn.getresponse()
            payload = resp.read()
            return resp.status, resp.headers, json.loads(payload) if payload else None
        finally:
            conn.close()


def worker_pids(service_pid: int) -> list[int]:
    """PIDs of the compute worker processes (spawned children) of a service."""
    found = []
    for child in psutil.Process(service_pid).children():
        try:
            if "spawn_main" in " ".join(child.cmdline()):
                found.append(child.pid)
        except psutil.NoSuchProcess:
            pass
    return sorted(found)
