"""tracemill installed as a user installs it (not editable, no tests/ beside it): the benchmark
commands that run test doubles start, and every data file the source tree ships is there."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

pytestmark = [pytest.mark.integration, pytest.mark.timeout(600)]

ROOT = Path(__file__).resolve().parents[2]
PACKAGES = ("actors", "cluster", "configs", "jobs", "serve_app")


def _data_files(root: Path) -> set[str]:
    """What a running stack may read besides code: Serve config and settings, migrations, the
    demo recording, the dashboard's and API docs' static files, the deploy manifests."""
    return {str(p.relative_to(root)) for package in PACKAGES for p in (root / package).rglob("*")
            if p.is_file() and p.suffix not in (".py", ".pyc", ".md") and "__pycache__" not in p.parts}


@pytest.fixture(scope="module")
def installed(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """`pip install --no-deps --target DIR` from a copy of the sources (a build writes into its
    source tree; the working tree stays as it is). The dependencies are the venv's."""
    work = tmp_path_factory.mktemp("install")
    source, target = work / "src", work / "site"
    source.mkdir()
    for name in ("pyproject.toml", "README.md"):
        shutil.copy2(ROOT / name, source / name)
    for package in PACKAGES:
        shutil.copytree(ROOT / package, source / package, ignore=shutil.ignore_patterns("__pycache__"))
    done = subprocess.run([sys.executable, "-m", "pip", "install", "--quiet", "--no-deps", "--target", str(target),
                           str(source)], capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stdout + done.stderr
    return target


def _tracemill(installed: Path, *args: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "PYTHONPATH": str(installed), "XDG_RUNTIME_DIR": os.environ.get("XDG_RUNTIME_DIR", "/tmp")}
    return subprocess.run([str(installed / "bin" / "tracemill"), *args], capture_output=True, text=True,
                          timeout=120, cwd=cwd, env=env)


def test_the_installed_copy_is_the_one_imported_and_tests_are_not(installed: Path, tmp_path: Path) -> None:
    code = ("import importlib.util, cluster, cluster.demo.replay as r; print(cluster.__file__);"
            " print(r.DEFAULT_RECORDING.is_file()); print(importlib.util.find_spec('tests'))")
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60, cwd=tmp_path,
                          env={**os.environ, "PYTHONPATH": str(installed)})
    assert done.returncode == 0, done.stderr
    assert done.stdout.split() == [str(installed / "cluster" / "__init__.py"), "True", "None"]


@pytest.mark.parametrize("bench", ["faults", "badinput", "spread", "ingest", "load"])
def test_bench_help_works_from_the_installed_copy(installed: Path, tmp_path: Path, bench: str) -> None:
    done = _tracemill(installed, "bench", bench, "--help", cwd=tmp_path)
    assert done.returncode == 0, done.stderr
    assert done.stdout.startswith(f"usage: tracemill bench {bench}") and "--output" in done.stdout


def test_every_data_file_is_installed(installed: Path) -> None:
    shipped = _data_files(ROOT)
    assert {"configs/serve.yaml", "cluster/demo/data/shop_checkout.json", "serve_app/static/dashboard.html"} <= shipped
    assert any(f.startswith("actors/storage/migrations/") for f in shipped)
    assert shipped <= _data_files(installed), sorted(shipped - _data_files(installed))
