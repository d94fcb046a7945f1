"""The JSON record a benchmark or demo writes with `--output`: its figures, when, and on what."""

from __future__ import annotations

import json
import os
import platform
import sys
import time
from pathlib import Path
from typing import Any

__all__ = ["write_result"]


def write_result(path: Path | None, record: dict[str, Any]) -> None:
    """Write `record` (stamped with the time and the machine unless it says) as indented JSON;
    nothing when no path was asked for."""
    if path is None:
        return
    record.setdefault("when", time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()))
    record.setdefault("machine", {"cpus": os.cpu_count(), "python": platform.python_version()})
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(record, indent=2, default=str) + "\n")
    print(f"wrote {path}", file=sys.stderr, flush=True)
