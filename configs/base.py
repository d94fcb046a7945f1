"""What every settings module shares: the config folder, the error type, the YAML loader."""

from __future__ import annotations

from pathlib import Path
from typing import Any, TypeVar

import yaml
from pydantic import BaseModel, ValidationError

__all__ = ["CONFIG_DIR", "SettingsError", "describe_validation_error", "load_yaml", "validated"]

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


def describe_validation_error(exc: ValidationError, heading: str = "invalid settings", *,
                              one_line: bool = False) -> str:
    """Every problem, each naming its field: one line per problem under the heading, or all of
    them on one line after it (what a job prints before it exits 2)."""
    problems = []
    for err in exc.errors(include_url=False, include_input=False):
        where = ".".join(str(p) for p in err["loc"]) or "(root)"
        problems.append(f"{where}: {err['msg']}")
    if one_line:
        return f"{heading}: " + "; ".join(problems)
    return "\n".join([f"{heading} ({exc.error_count()} problem(s)):", *(f"  {p}" for p in problems)])


M = TypeVar("M", bound=BaseModel)


def validated(model: type[M], data: Any, heading: str = "invalid settings", *, one_line: bool = False) -> M:
    """`model` validated from `data`, or a SettingsError describing every problem."""
    try:
        return model.model_validate(data)
    except ValidationError as exc:
        raise SettingsError(describe_validation_error(exc, heading, one_line=one_line)) from None
