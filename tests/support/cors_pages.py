"""Blank pages on two browser origins, for CORS tests from a real browser.

The test stack lists ALLOWED_ORIGIN in its CORS allowlist (tests/conftest.py sets
TRACEMILL_CORS_ORIGINS before it starts); any other origin is denied. Both are loopback, so
Chromium's private-network rules play no part: only CORS decides.

    with serve_blank(ALLOWED_HOST, ALLOWED_PORT) as url:   # "http://localhost:PORT/"
        ...
"""

from __future__ import annotations

import contextlib
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

from cluster.doubles.net import free_port

__all__ = ["ALLOWED_HOST", "ALLOWED_ORIGIN", "ALLOWED_PORT", "serve_blank"]

ALLOWED_HOST = "localhost"
ALLOWED_PORT = free_port()
ALLOWED_ORIGIN = f"http://{ALLOWED_HOST}:{ALLOWED_PORT}"

_PAGE = b"<!DOCTYPE html><html><head><title>cors test page</title></head><body>blank</body></html>"


class _Blank(BaseHTTPRequestHandler):
    def do_GET(self) -> None:  # noqa: N802 - http.server's naming
        self.send_response(200)
        self.send_header("Content-Type", "text/html; charset=utf-8")
        self.send_header("Content-Length", str(len(_PAGE)))
        self.end_headers()
        self.wfile.write(_PAGE)

    def log_message(self, *_args: object) -> None:
        pass


@contextlib.contextmanager
def serve_blank(host: str, port: int | None = None) -> Iterator[str]:
    server = ThreadingHTTPServer(("127.0.0.1", port or free_port()), _Blank)
    thread = threading.Thread(target=server.serve_forever, name="cors-page", daemon=True)
    thread.start()
    try:
        yield f"http://{host}:{server.server_address[1]}/"
    finally:
        server.shutdown()
        server.server_close()
