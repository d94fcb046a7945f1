"""What every settings module shares: the config folder, the error type, the YAML loader."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import yaml
from pydantic import ValidationError

__all__ = ["CONFIG_DIR", "SettingsError", "describe_validation_error", "load_yaml"]

CONFIG_DIR = Path(__file__).resolve().parent


class SettingsError(ValueError):
    """Settings or a config file that do not validate; the message names every problem."""


def load_yaml(path: Path) -> dict[str, Any]:
    """Read a YAML mapping, turning every failure into a SettingsError that names the file."""
    try:
        loaded = yaml.safe_load(Path(path).read_text())
    except FileNotFoundError:
        raise SettingsError(f"config file not found: {path}") from None
    except yaml.YAMLError as exc:
        raise SettingsError(f"{path}: not valid YAML: {exc}") from None
    if not isinstance(loaded, dict):
        raise SettingsError(f"{path}: expected a mapping at the top level")
    return loaded


def describe_validation_error(exc: ValidationError, heading: str = "invalid settings") -> str:
    """One line per problem, each naming the field: what every settings loader reports."""
    lines = [f"{heading} ({exc.error_count()} problem(s)):"]
    for err in exc.errors(include_url=False, include_input=False):
        where = ".".join(str(p) for p in err["loc"]) or "(root)"
        lines.append(f"  {where}: {err['msg']}")
    return "\n".join(lines)
