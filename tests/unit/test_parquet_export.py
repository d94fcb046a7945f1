"""The open Parquet export: one row per action step with the candidates as list<struct>, read
back by pyarrow and pandas (and DuckDB / `datasets` when installed) exactly as written."""

from __future__ import annotations

import importlib.util
import io
from pathlib import Path

import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from actors.training.dataset.parquet import SCHEMA, parquet_bytes, read_parquet
from actors.training.dataset.ranking import ranking_rows
from tests.unit.test_dataset_format import session_events

SESSION = {"session_id": "s-1", "task": "Log in to my account"}


def rows() -> list:
    return ranking_rows(SESSION, session_events(), {2: "frames/s2.webp", 8: "frames/s8.webp"})


def test_rows_round_trip_through_parquet() -> None:
    written = rows()
    assert read_parquet(parquet_bytes(written)) == written


def test_pyarrow_sees_the_documented_schema_one_row_per_step() -> None:
    table = pq.read_table(io.BytesIO(parquet_bytes(rows())))
    assert table.schema.equals(SCHEMA, check_metadata=False) and table.num_rows == 6
    assert table.schema.metadata[b"format"] == b"tracemill-ranking/1"
    assert all(f.metadata and f.metadata[b"description"] for f in table.schema)
    candidates = table.schema.field("candidates").type
    assert pa.types.is_list(candidates) and pa.types.is_struct(candidates.value_type)
    assert [candidates.value_type.field(i).name for i in range(4)] == ["id", "text", "selector", "positive"]
    assert table.column("action_uid").to_pylist() == [f"s-1:{i}" for i in range(6)]


def test_pandas_reads_the_positive_and_the_target() -> None:
    frame = pd.read_parquet(io.BytesIO(parquet_bytes(rows())))
    assert list(frame["action_type"]) == ["navigate", "click", "type", "click", "submit", "key"]
    nav, login = frame.iloc[0], frame.iloc[3]
    assert pd.isna(nav["target_index"]) and nav["target"] is None and nav["value"].startswith("https://")
    index = int(login["target_index"])
    assert login["candidates"][index]["positive"] and login["target"]["selector"] == "testid=login-btn"
    assert sum(c["positive"] for c in login["candidates"]) == 1
    assert login["candidates"][index]["text"] == login["target"]["text"]
    assert login["screenshot"] == "frames/s8.webp" and list(login["previous_actions"])


def test_an_empty_split_is_a_valid_file_with_the_schema() -> None:
    table = pq.read_table(io.BytesIO(parquet_bytes([])))
    assert table.num_rows == 0 and table.schema.equals(SCHEMA, check_metadata=False)


@pytest.mark.skipif(importlib.util.find_spec("duckdb") is None, reason="duckdb is not installed")
def test_duckdb_unnests_the_candidates(tmp_path: Path) -> None:
    import duckdb

    path = tmp_path / "train.parquet"
    path.write_bytes(parquet_bytes(rows()))
    (n,) = duckdb.sql(f"SELECT count(*) FROM (SELECT unnest(candidates) AS c FROM '{path}')"
                      " WHERE c.positive").fetchone()
    assert n == 4  # every step but the navigation and the Escape key has its target positive


@pytest.mark.skipif(importlib.util.find_spec("datasets") is None, reason="datasets is not installed")
def test_hugging_face_datasets_loads_the_split(tmp_path: Path) -> None:
    from datasets import load_dataset

    (tmp_path / "train.parquet").write_bytes(parquet_bytes(rows()))
    ds = load_dataset("parquet", data_files={"train": str(tmp_path / "train.parquet")}, split="train")
    assert ds.num_rows == 6 and ds[3]["target"]["selector"] == "testid=login-btn"
