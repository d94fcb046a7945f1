"""Every job's `python -m jobs.<name>` goes through jobs/entrypoint.job_main: the same usage
errors, validation before the cluster, one-line errors and exit codes."""

from __future__ import annotations

import argparse
from pathlib import Path

import pytest

import jobs
from jobs import build_dataset, purge
from jobs.entrypoint import EXIT_BAD_INPUT, job_main, whole_number

JOBS_DIR = Path(jobs.__file__).parent


def test_every_job_main_is_the_shared_runner() -> None:
    modules = sorted(p for p in JOBS_DIR.glob("*.py") if p.stem not in ("__init__", "entrypoint"))
    assert len(modules) >= 5
    for path in modules:
        text = path.read_text("utf-8")
        assert "job_main(" in text, f"{path.name}: main does not use jobs.entrypoint.job_main"
        for own in ("argparse.ArgumentParser(", "run_entrypoint(", "join_cluster("):
            assert own not in text, f"{path.name} repeats the runner ({own})"


def test_usage_errors_exit_2_with_the_usage_line(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exc:
        purge.main(["--grace-s", "-1"])
    assert exc.value.code == EXIT_BAD_INPUT
    assert "python -m jobs.purge: error: argument --grace-s: must be at least 0" in capsys.readouterr().err
    with pytest.raises(SystemExit) as exc:
        build_dataset.main([])  # the check: neither --config nor --dataset-id
    assert exc.value.code == EXIT_BAD_INPUT
    assert "give --config, --dataset-id, or both" in capsys.readouterr().err


def test_a_bad_config_file_is_one_line_and_exit_2_before_the_cluster(tmp_path: Path,
                                                                    capsys: pytest.CaptureFixture[str]) -> None:
    # ray.init would fail in unit tests: exit 2 with this message proves nothing was joined.
    bad = tmp_path / "dataset.yaml"
    bad.write_text("- not a mapping\n")
    assert build_dataset.main(["--config", str(bad)]) == EXIT_BAD_INPUT
    err = capsys.readouterr().err.strip()
    assert err.startswith("build_dataset: ") and "mapping" in err and "\n" not in err


def test_job_main_takes_prepare_or_run_not_both() -> None:
    def add(parser: argparse.ArgumentParser) -> None:
        pass

    with pytest.raises(TypeError):
        job_main("x", None, [], add_arguments=add)
    with pytest.raises(TypeError):
        job_main("x", None, [], add_arguments=add, run=lambda s, a: 0, prepare=lambda a: lambda s: 0)


@pytest.mark.parametrize(("minimum", "text", "ok"), [(0, "0", True), (1, "0", False), (1, "7", True),
                                                     (0, "1.5", False), (0, "x", False)])
def test_whole_number(minimum: int, text: str, ok: bool) -> None:
    parse = whole_number(minimum)
    if ok:
        assert parse(text) == int(text)
    else:
        with pytest.raises(argparse.ArgumentTypeError):
            parse(text)
