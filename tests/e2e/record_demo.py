"""Record the demo's session for real: the e2e checkout test, run with the extension in headless
Chromium against a fresh test stack, exports its finalised session as the recording that
`tracemill demo` replays.

    python -m tests.e2e.record_demo [PATH]     # default: cluster/demo/data/shop_checkout.json

It runs the one test through pytest so that the stack is the tests' own (tests/conftest.py),
started and stopped in this process.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path

import pytest

from tests.e2e.test_extension import RECORD_DEMO_ENV

DEFAULT = Path(__file__).resolve().parents[2] / "cluster" / "demo" / "data" / "shop_checkout.json"


def main(argv: list[str]) -> int:
    path = Path(argv[0]).resolve() if argv else DEFAULT
    path.parent.mkdir(parents=True, exist_ok=True)
    os.environ[RECORD_DEMO_ENV] = str(path)
    test = "tests/e2e/test_extension.py::test_a_recorded_checkout_reaches_the_server_complete_and_clean"
    code = pytest.main([test, "-q", "-x", "--basetemp=/tmp/pt-ext", "-p", "no:cacheprovider"])
    if code == 0:
        print(f"recording written to {path} ({path.stat().st_size} bytes)")
    return int(code)


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
