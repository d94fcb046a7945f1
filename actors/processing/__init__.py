"""Finalisation of recorded sessions: the Ray tasks a shard fans out and their orchestration.

`screenshots` (compress, paint over sensitive boxes, pHash, local vision), `vision_step`
(the configured vision provider, cached by image hash), `analysis` (quality scores and
context), `archive` (ZIP + manifest in the object store), `tasks` (the Ray remote functions
around them) and `finalizer` (the per-shard state machine recording → finalizing → ready |
rejected | failed, resumable from PostgreSQL).
"""
