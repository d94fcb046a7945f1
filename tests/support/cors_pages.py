"""The one browser origin the test stack lists in its CORS allowlist (tests/conftest.py sets
TRACEMILL_CORS_ORIGINS before the stack starts); any other origin is denied.

CORS tests serve the test shop (tests/support/shop_site.py) on ALLOWED_PORT and open it as
http://localhost:ALLOWED_PORT, and a second copy on 127.0.0.1 as the denied origin. Both are
loopback, so Chromium's private-network rules play no part: only CORS decides.
"""

from __future__ import annotations

from cluster.doubles.net import free_port

__all__ = ["ALLOWED_HOST", "ALLOWED_ORIGIN", "ALLOWED_PORT"]

ALLOWED_HOST = "localhost"
ALLOWED_PORT = free_port()
ALLOWED_ORIGIN = f"http://{ALLOWED_HOST}:{ALLOWED_PORT}"
