"""The README is executable: every ```bash block of README.md either runs here, in order,
against the started stack, or is listed below with the reason it cannot. A new block that is
neither fails the test, so the README cannot rot again.

A block runs as the reader would run it, after `tracemill up`: with the key and endpoint it
printed (KEY, TM), an admin key (ADMIN_KEY), in a directory holding the README's YAML examples
(dataset.yaml, ft.yaml). The lines that assign those placeholders (`KEY=...`) are the reader's
to fill in, so the test's values replace them; the Ray dashboard the README names (:8265) is
the stack's. curl fails on an HTTP error, so a 4xx anywhere fails the block; a `# {...}` line
in a block is the JSON the command before it answers, and must be (a subset of) what it did.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from tests.support.stack import make_key

pytestmark = [pytest.mark.integration, pytest.mark.timeout(900)]

ROOT = Path(__file__).resolve().parents[2]
README = ROOT / "README.md"
FENCE = re.compile(r"^```(\w*)\n(.*?)^```\s*$", re.M | re.S)
PROVIDED = ("KEY", "TM", "ADMIN_KEY")  # the placeholders this test fills in

# Blocks run in README order, each named by the start of its first line.
RUN = (
    "KEY=...",  # "Try it": create a session, send an event, read it back
    "TRACEMILL_API_KEY=$KEY tracemill demo",  # replay the recorded checkout (a ready human session)
    "ADMIN_KEY=...",  # dataset builds: the CLI, `ray job submit`, the API; read it, download a file
    "# the newest ready sessions that mention",  # search and trends (issue 16)
)
NOT_RUN = {
    "# 1. install and run tracemill": "installs the package and runs `tracemill up` in the foreground: the"
                                      " stack fixture is that start-up (test_cli.py runs `up` itself), and step 2"
                                      " is this test suite",
    "tracemill finetune start": "a fine-tune at OpenAI; test_finetune.py runs these commands and routes against"
                                " the OpenAI-compatible test server",
    "export OPENAI_API_KEY=": "evaluates an OpenAI model; test_evaluate.py runs `tracemill eval run|compare` and"
                              " the Ray job against the OpenAI-compatible test server",
    "tracemill bench ingest": "a benchmark of minutes (its figures are in results/); test_installed.py starts it",
    "tracemill bench screenshots": "a benchmark of minutes (its figures are in results/)",
    "tracemill bench dataset": "a benchmark of minutes (its figures are in results/)",
    "tracemill bench capacity": "reads the results/ folder of a checkout; test_capacity_plan.py computes the plan"
                                " from the shipped results/*.json",
    "tracemill bench badinput": "a benchmark of minutes on a stack of its own; test_bad_input_corpus.py runs the"
                                " corpus, test_installed.py starts the command",
    "tracemill bench load": "a benchmark of minutes at N = 1,000; test_load_smoke.py runs the load at small N",
    "tracemill bench faults": "a benchmark of minutes on stacks of its own; test_chaos_smoke.py runs the scenarios"
                              " at small N, test_installed.py starts the command",
    "tracemill bench redaction": "a minute of CPU on 574 hostile 256 KiB strings, with the bruteforce benchmark"
                                 " on a stack of its own; test_redaction_worst_case.py and test_rate_limits.py"
                                 " check what they measure",
    "# the first owner of a deployment": "asks for a password on the terminal and signs in with it;"
                                         " test_accounts_signin.py runs `tracemill accounts create`, the sign-in,"
                                         " refresh, sign-out, audit and invitation routes against the stack",
    "tracemill bench signin": "a benchmark on a stack of its own (its figures are in results/signin.json);"
                              " test_accounts_signin.py checks the limits it measures",
    "tracemill bench spread": "a three-node cluster of its own, minutes; test_chaos_smoke.py runs it with --smoke",
    "# a local fine-tune: the CLI, a Ray job, or the API": "minutes of training; test_finetune_local.py runs the"
                                                          " job, the CLI and the API, test_local_models.py a tiny one",
    "# rank a page's candidates": "needs a trained model; test_local_models.py trains a tiny one and calls the route",
    "# evaluate local models": "needs a trained model (and an OpenAI model for the last line); test_local_models.py"
                               " runs eval run and compare for local:<id>, local:base and an OpenAI-compatible model",
    "# the dataset's value": "a benchmark of minutes (its figures are in results/dataset_value.json)",
    "# review: flag step 5": "needs a session id, a flag id and a review key; test_review.py runs every review"
                             " route, its transitions and errors, and a dataset build that leaves the flags out",
    "tracemill bench search": "a benchmark of minutes (1M generated events; its figures are in results/search.json);"
                              " test_sessions_search.py checks the plans on 100k events",
    "tracemill bench encryption": "a benchmark of minutes on an embedded PostgreSQL of its own (its figures are in"
                                  " results/encryption.json); test_encryption.py checks what it encrypts",
    "# follow the organisation's sessions": "a stream that runs until stopped; test_live_updates.py reads"
                                            " GET /v1/live, its catch-up and its errors",
    "TM=http://127.0.0.1:8000 ADMIN_KEY=": "sets the default workspace's notice, which every recorder key of the"
                                           " shared stack would then have to agree to again; test_consent.py makes"
                                           " these requests in an organisation of its own",
    "tracemill purge": "purges what is due after the grace period (nothing on a fresh stack) and the Ray job needs"
                       " the cluster's address; test_deletion.py runs the purge job's code with grace 0, cut short"
                       " and resumed, and checks what it removed",
    "# a workspace's retention periods": "changes a workspace's periods on the shared stack; test_retention.py"
                                         " makes these requests, bad bodies and a non-admin's, in a workspace of"
                                         " its own",
    "tracemill retention run": "runs over every workspace of the shared stack with the deployment's periods and"
                               " needs the cluster's address; test_retention.py runs the job's code with short"
                               " periods in a workspace of its own, stopped midway and resumed",
    "tracemill keys rotate-data-key": "needs a workspace id and the KEK in the environment; test_encryption.py runs"
                                      " the command against the stack while events are written and read",
    "# export everything kept about a recorder": "needs a recorder id and an export id of the deployment, and the"
                                                 " CLI the cluster's address; test_export.py runs the three routes"
                                                 " and the CLI's code against the stack and unzips what they give",
}


def blocks(language: str) -> list[str]:
    return [m[2] for m in FENCE.finditer(README.read_text()) if m[1] == language]


def _name(block: str) -> str:
    first = block.splitlines()[0]
    matches = [n for n in (*RUN, *NOT_RUN) if first.startswith(n)]
    assert len(matches) == 1, f"README block starting {first!r} is neither run nor listed in NOT_RUN (or both)"
    return matches[0]


def test_every_bash_block_is_run_or_listed_with_a_reason() -> None:
    names = [_name(b) for b in blocks("bash")]
    assert [n for n in names if n in RUN] == list(RUN), "RUN must list the blocks in README order, once each"
    assert sorted(n for n in names if n in NOT_RUN) == sorted(NOT_RUN), "a NOT_RUN entry matches no block"


def _script(blocks_to_run: list[str], dashboard: str) -> str:
    """One shell for all of them, as a reader would type them (SID, ID stay set), each block
    announced on stdout so a failure and each answer can be told to its block."""
    out = ["set -euo pipefail",  # and curl fails on an HTTP error, each answer on a line of its own
           """curl() { command curl --silent --show-error --fail-with-body --write-out '\\n' "$@"; }"""]
    for i, block in enumerate(blocks_to_run):
        lines = [line for line in block.splitlines() if not re.match(rf"({'|'.join(PROVIDED)})=", line)]
        out += [f"echo; echo '{_MARK}{i}'", "\n".join(lines).replace("http://127.0.0.1:8265", dashboard)]
    return "\n".join(out) + "\n"


_MARK = "### README block "


def _expected_json(block: str) -> list[dict[str, Any]]:
    return [json.loads(line[1:]) for line in block.splitlines() if line.startswith("# {")]


def _answered(expected: dict[str, Any], output: str) -> bool:
    for line in output.splitlines():
        try:
            got = json.loads(line)
        except ValueError:
            continue
        if isinstance(got, dict) and all(got.get(k) == v for k, v in expected.items()):
            return True
    return False


@pytest.fixture(scope="module")
def reader(stack: Any, tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, dict[str, str]]:
    """The reader's shell after `tracemill up`: a directory with the YAML examples, and the env."""
    folder = tmp_path_factory.mktemp("reader")
    for block in blocks("yaml"):
        name = re.match(r"# (\S+\.yaml)", block)
        if name:
            (folder / name[1]).write_text(block)
    env = {k: v for k, v in os.environ.items() if k not in ("RAY_ADDRESS", "DATABASE_URL", "TRACEMILL_API_KEY")}
    env |= {"KEY": make_key(stack, ["ingest", "read"]), "ADMIN_KEY": make_key(stack, ["ingest", "read", "admin"]),
            "TM": stack.endpoint, "TRACEMILL_STATE_DIR": str(stack.state_dir),
            "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ.get('PATH', '')}"}
    if (Path.home() / ".ray" / "auth_token").exists():  # as the README says for `ray job submit`
        env["RAY_AUTH_MODE"] = "token"
    return folder, env


def test_the_runnable_blocks_run_in_order(stack: Any, reader: tuple[Path, dict[str, str]]) -> None:
    folder, env = reader
    dashboard = stack.dashboard_url if "://" in (stack.dashboard_url or "") else f"http://{stack.dashboard_url}"
    runnable = [b for b in blocks("bash") if _name(b) in RUN]
    done = subprocess.run(["bash", "-c", _script(runnable, dashboard)], capture_output=True, text=True, cwd=folder,
                          env=env, timeout=800)
    outputs = done.stdout.split(_MARK)[1:]  # "<index>\n<what the block printed>"
    if done.returncode != 0:
        failed = _name(runnable[int(outputs[-1].split()[0])]) if outputs else "before the first block"
        pytest.fail(f"README block {failed!r} failed (exit {done.returncode}):\n{done.stdout[-3000:]}\n"
                    f"{done.stderr[-3000:]}")
    assert len(outputs) == len(runnable)
    for block, output in zip(runnable, outputs):
        for expected in _expected_json(block):
            assert _answered(expected, output), f"{_name(block)!r} answered no {expected} in:\n{output}"
    assert (folder / "train.jsonl").stat().st_size > 0  # the dataset block's download
