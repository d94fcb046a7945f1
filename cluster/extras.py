"""Optional dependencies, imported where they are used: a missing one is a one-line error
naming the extra that installs it, not a traceback at start-up."""

from __future__ import annotations

import importlib
from types import ModuleType

from actors.errors import ConfigError

__all__ = ["require"]


def require(module: str, *, extra: str, needed_by: str) -> ModuleType:
    """Import `module`, or raise ConfigError: "<needed_by> needs <module>: pip install 'tracemill[<extra>]'"."""
    try:
        return importlib.import_module(module)
    except ImportError as exc:
        missing = exc.name or module
        raise ConfigError(f"{needed_by} needs {missing}, which tracemill's `{extra}` extra installs:"
                          f" pip install 'tracemill[{extra}]'") from None
