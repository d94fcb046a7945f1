"""The layout holds: imports point one way (cluster → serve_app → actors → configs, jobs →
actors), nothing shipped imports tests/, and no file name means two things in one room."""

from __future__ import annotations

import ast
from collections import defaultdict
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
SHIPPED = ("configs", "actors", "serve_app", "jobs", "cluster")
OURS = (*SHIPPED, "tests")
# What each top-level package may import of ours (besides itself).
ALLOWED = {
    "configs": set(),
    "actors": {"configs"},
    "serve_app": {"actors", "configs"},
    "jobs": {"actors", "configs"},
    "cluster": {"serve_app", "actors", "configs", "jobs"},
}


def _modules(package: str) -> list[Path]:
    return sorted(p for p in (ROOT / package).rglob("*.py") if "__pycache__" not in p.parts)


def _imported_packages(path: Path) -> set[tuple[str, int]]:
    """Top-level packages of ours a module imports, with the line, wherever the import sits."""
    found: set[tuple[str, int]] = set()
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            names = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            names = [node.module]
        else:
            continue
        found |= {(n.split(".")[0], node.lineno) for n in names if n.split(".")[0] in OURS}
    return found


def test_imports_point_one_way() -> None:
    wrong = [
        f"{path.relative_to(ROOT)}:{line} imports {target}"
        for package in SHIPPED
        for path in _modules(package)
        for target, line in _imported_packages(path)
        if target != package and target not in ALLOWED[package]
    ]
    assert not wrong, "imports against the arrows:\n" + "\n".join(sorted(wrong))


def test_the_checker_sees_an_import_against_the_arrows(tmp_path: Path) -> None:
    module = tmp_path / "m.py"
    module.write_text("def f():\n    from serve_app.bodies import SessionCreate\n    import tests.support\n")
    assert {t for t, _ in _imported_packages(module)} == {"serve_app", "tests"}


def test_no_two_modules_of_one_room_share_a_file_name() -> None:
    """The domain (actors, serve_app, jobs) and the operator's tools (cluster) each name a module
    once; configs/ mirrors the areas it configures (configs/dataset.py beside a dataset build)."""
    for room in (("actors", "serve_app", "jobs"), ("cluster",)):
        _assert_unique_names(room)


def _assert_unique_names(packages: tuple[str, ...]) -> None:
    by_name: dict[str, list[str]] = defaultdict(list)
    for package in packages:
        for path in _modules(package):
            if path.name not in ("__init__.py", "__main__.py"):
                by_name[path.name].append(str(path.relative_to(ROOT)))
    twice = {name: paths for name, paths in by_name.items() if len(paths) > 1}
    assert not twice, f"file names used twice: {twice}"


def test_no_two_test_modules_share_a_file_name() -> None:
    """pytest imports test files by their base name (tests/*/ have no __init__.py): two of one
    name stop the whole run at collection."""
    by_name: dict[str, list[str]] = defaultdict(list)
    for path in sorted((ROOT / "tests").rglob("test_*.py")):
        by_name[path.name].append(str(path.relative_to(ROOT)))
    twice = {name: paths for name, paths in by_name.items() if len(paths) > 1}
    assert not twice, f"test file names used twice: {twice}"
