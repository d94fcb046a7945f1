"""Shared test configuration. Integration fixtures live in tests/integration/conftest.py."""

import os

# Ray and pgserver look here for runtime files; keep them off the user's XDG dirs.
os.environ.setdefault("XDG_RUNTIME_DIR", "/tmp")
