"""The streaming dataset build's pure parts, no Ray, no database: chunks sized by measured cost,
and the driver's writer, whose files must equal what the list functions (dedupe, dataset_stats,
validate_examples, the Parquet export) make of the whole dataset at once, however the work is
cut into chunks."""

from __future__ import annotations

import copy
import hashlib
import io
from pathlib import Path

import pyarrow.parquet as pq
import pytest

from actors.training.dataset.chunks import ChunkResult, EncodedSplit, encode_examples, encode_rows, jsonl_line
from actors.training.dataset.formats import (
    DatasetFormatSettings,
    build_examples,
    dataset_stats,
    dedupe,
    validate_examples,
)
from actors.training.dataset.parquet import ParquetFileWriter, parquet_bytes, read_parquet, rows_ipc
from actors.training.dataset.planner import ChunkPlanner, session_units
from actors.training.dataset.ranking import dedupe_rows, ranking_rows, ranking_stats
from actors.training.dataset.writer import DatasetWriter
from tests.unit.test_dataset_format import LOGIN, PNG, session_events

FMT = DatasetFormatSettings(image_mode="data_url", max_images_per_example=1)


def sessions() -> list[tuple[dict, list[dict], str]]:
    """Six sessions, train then validation; session 3 repeats session 0 (its examples are
    duplicates), validation session 5 repeats train session 1 (dropped as a leak)."""
    out = []
    for i in range(6):
        events = copy.deepcopy(session_events())
        for ev in events:
            if ev.get("target") == LOGIN:
                ev["target"] = {**LOGIN, "text": f"Log in {i % 3 if i in (3, 5) else i}"}
        task = f"task {0 if i == 3 else 1 if i == 5 else i}"
        out.append(({"session_id": f"s-{i}", "task": task}, events, "train" if i < 4 else "validation"))
    return out


def encoded(chunk: list[tuple[dict, list[dict], str]]) -> ChunkResult:
    splits: dict[str, EncodedSplit] = {}
    for session, events, split in chunk:
        encode_examples(splits.setdefault(split, EncodedSplit()), build_examples(session, events, {2: PNG}, FMT), FMT)
    for split in {s for _, _, s in chunk}:
        rows = [r for session, events, s in chunk if s == split
                for r in ranking_rows(session, events, {2: "frames/2.webp"}, FMT)]
        encode_rows(splits[split], rows)
    return ChunkResult(splits, len(chunk), 0, 0.01)


def write(folder: Path, chunks: list[list]) -> dict:
    folder.mkdir()
    writer = DatasetWriter(folder)
    for chunk in chunks:
        writer.add(encoded(chunk))
    return writer.close()


def test_streamed_files_equal_the_whole_dataset_built_at_once(tmp_path: Path) -> None:
    work = sessions()
    written = write(tmp_path / "one", [work])
    by_split = {split: [ex for session, events, s in work if s == split
                        for ex in build_examples(session, events, {2: PNG}, FMT)]
                for split in ("train", "validation")}
    seen: set[str] = set()
    train, train_dups = dedupe(by_split["train"], seen)
    val, val_dups = dedupe(by_split["validation"], seen)
    assert train_dups > 0 and val_dups > 0, "the fixture must hold repeats"
    assert written["dropped"] == {"train": train_dups, "validation": val_dups}
    assert written["files"]["train.jsonl"].path.read_bytes() == b"".join(map(jsonl_line, train))
    assert written["files"]["validation.jsonl"].path.read_bytes() == b"".join(map(jsonl_line, val))
    assert written["stats"] == {"train": dataset_stats(train), "validation": dataset_stats(val)}
    for name, f in written["files"].items():
        assert f.sha256 == hashlib.sha256(f.path.read_bytes()).hexdigest() and f.bytes == f.path.stat().st_size, name
    rows_seen: set[str] = set()
    rows = {split: dedupe_rows((r for session, events, s in work if s == split
                                for r in ranking_rows(session, events, {2: "frames/2.webp"}, FMT)), rows_seen)[0]
            for split in ("train", "validation")}
    for split in ("train", "validation"):
        assert read_parquet(written["files"][f"{split}.parquet"].path.read_bytes()) == rows[split]
        assert written["ranking"][split] == ranking_stats(rows[split])
        assert written["files"][f"{split}.ranking.jsonl"].rows == len(rows[split])
    # Six sessions make fewer than ten train examples: the same problem the list check finds.
    assert written["problems"] == [{"split": "train", **p} for p in validate_examples(train, FMT)]


def test_how_the_work_is_cut_does_not_change_a_byte(tmp_path: Path) -> None:
    work = sessions()
    whole = write(tmp_path / "whole", [work])
    single = write(tmp_path / "single", [[s] for s in work])
    pairs = write(tmp_path / "pairs", [work[0:2], work[2:3], work[3:6]])
    for name, f in whole["files"].items():
        assert f.path.read_bytes() == single["files"][name].path.read_bytes() == pairs["files"][name].path.read_bytes(), name


def test_problems_are_indexed_in_the_written_file(tmp_path: Path) -> None:
    fmt = DatasetFormatSettings(max_example_tokens=50)
    part = EncodedSplit()
    examples = build_examples({"session_id": "s", "task": "t"}, session_events(), None, fmt)
    encode_examples(part, examples + examples, fmt)  # the second copy is dropped
    writer = DatasetWriter(tmp_path)
    writer.add(ChunkResult({"train": part}, 1, 0, 0.01))
    written = writer.close()
    assert written["problems"][:len(examples)] == [{"split": "train", **p} for p in validate_examples(examples, fmt)][:len(examples)]
    assert written["problem_count"] == len(validate_examples(examples, fmt))


def test_train_work_after_validation_work_is_refused(tmp_path: Path) -> None:
    work = sessions()
    writer = DatasetWriter(tmp_path)
    writer.add(encoded([work[4]]))
    with pytest.raises(ValueError, match="train work after validation"):
        writer.add(encoded([work[0]]))


def test_parquet_row_groups_do_not_depend_on_batching(tmp_path: Path) -> None:
    rows = dedupe_rows(r for session, events, _ in sessions()
                       for r in ranking_rows(session, events, None, FMT))[0]
    assert len(rows) >= 7

    def written(name: str, batches: list[list]) -> bytes:
        out = ParquetFileWriter(tmp_path / name, row_group_rows=3)
        for batch in batches:
            out.add(rows_ipc(batch), [True] * len(batch))
        out.close()
        return (tmp_path / name).read_bytes()

    a = written("a.parquet", [rows[:2], rows[2:4], rows[4:7]])
    b = written("b.parquet", [rows[:7]])
    assert a == b
    meta = pq.ParquetFile(io.BytesIO(a)).metadata
    assert [meta.row_group(i).num_rows for i in range(meta.num_row_groups)] == [3, 3, 1]
    assert read_parquet(a) == rows[:7]
    assert read_parquet(written("empty.parquet", [])) == read_parquet(parquet_bytes([])) == []


def test_first_chunks_probe_then_chunks_carry_the_target_work() -> None:
    planner = ChunkPlanner([100.0] * 100, workers=2, target_seconds=1.0, max_result_bytes=1 << 30,
                           max_sessions=1000)
    first = planner.next()
    assert first == range(0, 1) and planner.next() == range(1, 2)  # nothing measured yet: probes
    planner.observe(planner.units(first), seconds=0.1, nbytes=1000)  # 1,000 units a second
    assert len(planner.next()) == 10  # 1 s of work
    planner.observe(1000.0, seconds=2.0, nbytes=1000)  # slower than thought: 1000 units in 2 s
    chunk = planner.next()
    assert chunk is not None and len(chunk) == 5  # (1,100 units in 2.1 s): 5 sessions ~ 0.95 s


def test_chunks_are_capped_by_bytes_and_sessions_and_shrink_at_the_end() -> None:
    planner = ChunkPlanner([10.0] * 40, workers=2, target_seconds=100.0, max_result_bytes=500,
                           max_sessions=1000)
    planner.observe(planner.units(planner.next()), seconds=0.01, nbytes=100)  # 10 units: 100 bytes
    assert len(planner.next()) == 5  # 500 bytes
    capped = ChunkPlanner([1.0] * 40, workers=1, target_seconds=100.0, max_result_bytes=1 << 30,
                          max_sessions=3)
    capped.observe(1.0, 0.001, 1)
    assert len(capped.next()) == 3
    tail = ChunkPlanner([1.0] * 21, workers=2, target_seconds=100.0, max_result_bytes=1 << 30,
                        max_sessions=1000)
    tail.observe(tail.units(tail.next()), 0.001, 1)
    sizes = []
    while (chunk := tail.next()) is not None:
        sizes.append(len(chunk))
    assert sizes == [10, 5, 2, 1, 1, 1] and tail.submitted == 21  # an even share per worker
    assert session_units(100, 5, True) > session_units(100, 5, False) == 101.0
