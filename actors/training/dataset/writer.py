"""The driver's side of a dataset build: chunk results, in work order, appended to the split
files on local disk as they arrive, so the driver holds one chunk at a time, never the dataset.

It keeps only what spans chunks: the dedupe keys (32 bytes an example), the token counts for the
report's p95, the first problems. Work lists put every train session before every validation
session, so when validation lines arrive every train key is known and a validation copy of a
train example is dropped, as `formats.dedupe` does with whole lists.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from pathlib import Path
from typing import Any, BinaryIO

from actors.training.dataset.chunks import ChunkResult, EncodedLines, EncodedSplit
from actors.training.dataset.formats import OPENAI_MIN_EXAMPLES, StatsAccumulator
from actors.training.dataset.parquet import MEDIA_TYPE as PARQUET_MEDIA_TYPE, ParquetFileWriter
from actors.training.dataset.ranking import RankingStatsAccumulator

__all__ = ["SPLITS", "DatasetWriter", "WrittenFile"]

SPLITS = ("train", "validation")
MAX_REPORTED_PROBLEMS = 50


@dataclass(frozen=True)
class WrittenFile:
    path: Path
    content_type: str
    rows: int | None
    bytes: int
    sha256: str


class _HashedFile:
    def __init__(self, path: Path) -> None:
        self.path = path
        self._file: BinaryIO = open(path, "wb")
        self._hash = hashlib.sha256()
        self.bytes = self.rows = 0

    def write(self, data: bytes | memoryview) -> None:
        self._file.write(data)
        self._hash.update(data)
        self.bytes += len(data)

    def close(self, content_type: str) -> WrittenFile:
        self._file.close()
        return WrittenFile(self.path, content_type, self.rows, self.bytes, self._hash.hexdigest())


class _Split:
    def __init__(self, folder: Path, split: str) -> None:
        self.examples = _HashedFile(folder / f"{split}.jsonl")
        self.ranking = _HashedFile(folder / f"{split}.ranking.jsonl")
        self.parquet = ParquetFileWriter(folder / f"{split}.parquet")
        self.stats = StatsAccumulator()
        self.ranking_stats = RankingStatsAccumulator()
        self.dropped = 0
        self.problems: list[dict[str, Any]] = []
        self.problem_count = 0


class DatasetWriter:
    def __init__(self, folder: Path) -> None:
        self._folder = folder
        self._splits = {split: _Split(folder, split) for split in SPLITS}
        self._seen: set[bytes] = set()
        self._seen_rows: set[bytes] = set()
        self._validation_started = False
        self.sessions = self.empty_sessions = self.examples = 0

    def add(self, result: ChunkResult) -> None:
        for name, part in result.splits.items():
            if name == "validation":
                self._validation_started = True
            elif self._validation_started:
                raise ValueError("train work after validation work: the dedupe would miss copies")
            self._add_split(self._splits[name], part)
        self.sessions += result.sessions
        self.empty_sessions += result.empty_sessions

    def _add_split(self, out: _Split, part: EncodedSplit) -> None:
        kept = _new_lines(part.examples, self._seen, out.examples)
        out.dropped += len(part.examples.ends) - len(kept)
        for index, i in enumerate(kept, out.examples.rows - len(kept)):
            out.stats.add(part.summaries[i])
            for code, message in part.problems.get(i, ()):
                out.problem_count += 1
                if len(out.problems) < MAX_REPORTED_PROBLEMS:
                    out.problems.append({"index": index, "code": code, "message": message})
        flags = [False] * len(part.ranking.ends)
        for i in _new_lines(part.ranking, self._seen_rows, out.ranking):
            flags[i] = True
            out.ranking_stats.add(*part.ranking_summaries[i])
        if part.ranking_ipc is not None:
            out.parquet.add(part.ranking_ipc, flags)
        self.examples += len(kept)

    def close(self) -> dict[str, Any]:
        """Close every file; what the report and the upload need: files (by name, in upload
        order), stats, ranking stats, dropped duplicates and rule problems."""
        files: dict[str, WrittenFile] = {}
        for split, out in self._splits.items():
            files[f"{split}.jsonl"] = out.examples.close("application/jsonl")
        ranking = {split: out.ranking_stats.result() for split, out in self._splits.items()}
        for split, out in self._splits.items():
            files[f"{split}.ranking.jsonl"] = out.ranking.close("application/jsonl")
            out.parquet.close()
            path = self._folder / f"{split}.parquet"
            files[f"{split}.parquet"] = WrittenFile(path, PARQUET_MEDIA_TYPE, out.parquet.rows, path.stat().st_size,
                                                    _sha256(path))
        train, val = self._splits["train"], self._splits["validation"]
        problems = [{"split": "train", **p} for p in train.problems]
        count = train.problem_count + val.problem_count
        if (n := train.examples.rows) < OPENAI_MIN_EXAMPLES:
            problems.append({"split": "train", "index": None, "code": "too_few_examples",
                             "message": f"{n} examples, at least {OPENAI_MIN_EXAMPLES}"})
            count += 1
        problems += [{"split": "validation", **p} for p in val.problems]
        return {"files": files, "has_ranking": any(r["rows"] for r in ranking.values()),
                "stats": {split: out.stats.result() for split, out in self._splits.items()},
                "ranking": ranking, "dropped": {split: out.dropped for split, out in self._splits.items()},
                "problems": problems[:MAX_REPORTED_PROBLEMS], "problem_count": count}


def _new_lines(lines: EncodedLines, seen: set[bytes], out: _HashedFile) -> list[int]:
    """Append the lines whose key was not seen before to `out`; their positions."""
    view, start, kept = memoryview(lines.data), 0, []
    for i, (end, key) in enumerate(zip(lines.ends, lines.keys)):
        if key not in seen:
            seen.add(key)
            out.write(view[start:end])
            out.rows += 1
            kept.append(i)
        start = end
    return kept


def _sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        while block := f.read(1 << 20):
            digest.update(block)
    return digest.hexdigest()
