"""Build a dataset on the test stack from a config dict (in this process, --one-process) and read
back what it wrote: the row, its report, the sessions, the ranking rows per session and the
chat examples' bytes."""

from __future__ import annotations

import json
import uuid
from pathlib import Path
from typing import Any

import pytest
import yaml

from jobs import build_dataset
from tests.support.stack import read_object, run_db

__all__ = ["built_dataset"]


def built_dataset(stack: Any, tmp_path: Path, capsys: pytest.CaptureFixture, body: dict[str, Any],
                  name: str = "dataset") -> dict[str, Any]:
    path = tmp_path / f"{name}.yaml"
    path.write_text(yaml.safe_dump(body))
    assert build_dataset.main(["--config", str(path), "--one-process"]) == 0
    dataset_id = capsys.readouterr().out.split("dataset ")[-1].split()[0]
    row = run_db(stack, "SELECT * FROM datasets WHERE dataset_id = $1", uuid.UUID(dataset_id))[0]
    files = json.loads(row["files"])
    steps: dict[str, int] = {}
    text = b""
    for split in ("train", "validation"):
        for line in read_object(stack, files[f"{split}.ranking.jsonl"]["key"]).decode().splitlines():
            sid = json.loads(line)["session_id"]
            steps[sid] = steps.get(sid, 0) + 1
        text += read_object(stack, files[f"{split}.jsonl"]["key"])
    return {"sessions": {str(s) for s in [*row["train_sessions"], *row["validation_sessions"]]},
            "report": json.loads(row["report"]), "steps": steps, "text": text}
