"""What code built an artifact: recorded with every dataset (its lineage) and job."""

from __future__ import annotations

import subprocess
from functools import lru_cache
from importlib.metadata import PackageNotFoundError, version
from pathlib import Path

__all__ = ["code_version"]


@lru_cache(maxsize=1)
def code_version() -> str:
    """The package version, plus the git commit when the code runs from a checkout (a
    `ray job submit --working-dir .` upload has no .git; the version alone is recorded)."""
    try:
        text = f"tracemill {version('tracemill')}"
    except PackageNotFoundError:
        text = "tracemill (not installed)"
    here = Path(__file__).parent
    try:
        sha = subprocess.run(["git", "rev-parse", "--short=12", "HEAD"], cwd=here, capture_output=True,
                             text=True, timeout=5, check=True).stdout.strip()
        dirty = subprocess.run(["git", "status", "--porcelain", "--untracked-files=no"], cwd=here,
                               capture_output=True, text=True, timeout=5).stdout.strip()
        return f"{text} git {sha}{'+dirty' if dirty else ''}"
    except (OSError, subprocess.SubprocessError):
        return text
