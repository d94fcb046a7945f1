"""The `tracemill` command table: every entry resolves to arguments and a run function, a
command's code is imported only when it is chosen (so `tracemill --help` never loads Ray), one
table entry is all a new command needs, and a missing optional dependency names its extra."""

from __future__ import annotations

import argparse
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from actors.errors import ConfigError
from cluster.bench import BENCH
from cluster.cli import COMMANDS, build_parser
from cluster.commands import RUN, Command, add_commands, load, run_chosen
from cluster.extras import require

GROUPS = {"bench": BENCH}


def _python(code: str, cwd: Path | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-c", textwrap.dedent(code)], capture_output=True, text=True,
                          timeout=120, cwd=cwd)


def test_help_lists_every_command_and_imports_none_of_them() -> None:
    done = _python("""
        import sys
        from cluster.cli import main
        try:
            main(["--help"])
        except SystemExit as exc:
            assert exc.code == 0
        loaded = sorted(m for m in sys.modules if m == "ray" or m.startswith(("ray.", "cluster.", "jobs")))
        print("LOADED", loaded)
    """)
    assert done.returncode == 0, done.stderr
    listed = " ".join(done.stdout.split())
    for name, command in COMMANDS.items():
        assert f"{name} {command.help}" in listed, name
    assert "LOADED ['cluster.cli', 'cluster.commands']" in done.stdout, done.stdout


def test_a_benchmark_help_loads_that_benchmark_only() -> None:
    done = _python("""
        import sys
        from cluster.cli import main
        try:
            main(["bench", "load", "--help"])
        except SystemExit as exc:
            assert exc.code == 0
        print("LOADED", sorted(m for m in sys.modules if m.startswith("cluster.")), "ray" in sys.modules)
    """)
    assert done.returncode == 0, done.stderr
    assert "--sessions" in done.stdout and "cluster.bench.load" in done.stdout
    assert "cluster.bench.ingest" not in done.stdout and "cluster.chaos" not in done.stdout


@pytest.mark.parametrize("table", [COMMANDS, BENCH], ids=["tracemill", "bench"])
def test_every_entry_has_arguments_and_a_run(table: dict[str, Command]) -> None:
    for name, command in table.items():
        target = load(command.where)
        assert callable(target.add_arguments), name
        if name not in GROUPS:  # a group's chosen member runs, not the group
            assert callable(target.run), name


def test_the_deepest_command_chosen_is_the_one_that_runs() -> None:
    args = build_parser().parse_args(["bench", "load", "--sessions", "10", "--duration", "1"])
    assert (args.command, args.which, getattr(args, RUN)) == ("bench", "load", "cluster.bench.load")
    assert args.sessions == "10" and args.duration == 1.0
    args = build_parser().parse_args(["dataset", "show", "00000000-0000-0000-0000-000000000001"])
    assert getattr(args, RUN) == "cluster.training_cli:DATASET" and args.dataset_command == "show"


def test_bad_arguments_are_argparse_errors(capsys: pytest.CaptureFixture[str]) -> None:
    for argv in (["nope"], ["bench"], ["bench", "nope"], ["up", "--port", "70000"]):
        with pytest.raises(SystemExit) as exc:
            build_parser().parse_args(argv)
        assert exc.value.code == 2, argv
    assert "invalid choice: 'nope'" in capsys.readouterr().err


def test_a_new_command_is_one_table_entry(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    (tmp_path / "tm_extra_command.py").write_text(textwrap.dedent("""
        def add_arguments(parser):
            parser.add_argument("--times", type=int, default=1)

        def run(args):
            return 40 + args.times
    """))
    monkeypatch.syspath_prepend(str(tmp_path))
    parser = argparse.ArgumentParser(prog="t")
    add_commands(parser, {**COMMANDS, "extra": Command("an extra command", "tm_extra_command")}, dest="command")
    assert run_chosen(parser.parse_args(["extra", "--times", "2"])) == 42


def test_a_missing_extra_is_one_line_naming_it() -> None:
    with pytest.raises(ConfigError) as exc:
        require("tracemill_no_such_module", extra="bench", needed_by="the thing")
    assert str(exc.value) == ("the thing needs tracemill_no_such_module, which tracemill's `bench` extra"
                              " installs: pip install 'tracemill[bench]'")


@pytest.mark.parametrize("blocked, code", [
    ("moto", "from cluster.doubles.moto_server import start_moto_server; start_moto_server()"),
    ("schemathesis", "from cluster.badinput.fuzz import run_schemathesis; run_schemathesis('http://127.0.0.1:9', 'k')"),
])
def test_the_optional_dependencies_are_imported_where_used(blocked: str, code: str) -> None:
    done = _python(f"""
        import sys
        sys.modules[{blocked!r}] = None  # as if not installed
        from actors.errors import ConfigError
        try:
            {code}
        except ConfigError as exc:
            print("ERROR", exc)
    """)
    assert done.returncode == 0, done.stderr
    assert f"needs {blocked}" in done.stdout and "pip install 'tracemill[bench]'" in done.stdout, done.stdout


def test_demo_and_loadgen_need_a_key_from_the_flag_or_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("TRACEMILL_API_KEY", raising=False)
    for argv in (["demo"], ["loadgen"]):
        with pytest.raises(SystemExit):
            build_parser().parse_args(argv)
    monkeypatch.setenv("TRACEMILL_API_KEY", "tm_from_env")
    assert build_parser().parse_args(["demo"]).api_key == "tm_from_env"
