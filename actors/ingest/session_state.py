"""What a shard remembers about one session between commits: enough to ack without a query.

`acked_through` is the highest seq such that every seq from 0 to it is stored (-1 when none);
`above` holds the stored seqs beyond it, from which the gaps are derived. The state only ever
changes after a commit, so it never claims more than the database holds.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass, field
from typing import Iterable

__all__ = ["SessionState", "MAX_GAPS_REPORTED"]

# An ack stays small even for a client that skipped every other seq.
MAX_GAPS_REPORTED = 100


# Slots: a shard keeps one of these for every session it has seen (up to 50,000), so each
# saves its instance dict (~100 bytes of 300).
@dataclass(slots=True)
class SessionState:
    session_id: uuid.UUID
    org_id: uuid.UUID
    status: str
    acked_through: int = -1
    above: set[int] = field(default_factory=set)
    closing: bool = False

    @property
    def max_seq(self) -> int:
        return max(self.above) if self.above else self.acked_through

    def is_stored(self, seq: int) -> bool:
        return seq <= self.acked_through or seq in self.above

    def advanced(self, inserted: Iterable[int]) -> tuple[int, set[int]]:
        """The (acked_through, above) this state would have once `inserted` is committed."""
        above = self.above | {s for s in inserted if s > self.acked_through}
        acked = self.acked_through
        while acked + 1 in above:
            acked += 1
            above.discard(acked)
        return acked, above

    def apply(self, acked_through: int, above: set[int]) -> None:
        self.acked_through, self.above = acked_through, above

    def gaps(self, limit: int = MAX_GAPS_REPORTED) -> list[tuple[int, int]]:
        """Missing [first, last] ranges below the highest stored seq, lowest first."""
        out: list[tuple[int, int]] = []
        expected = self.acked_through + 1
        for seq in sorted(self.above):
            if seq > expected:
                out.append((expected, seq - 1))
                if len(out) >= limit:
                    break
            expected = seq + 1
        return out

    def ack(self, accepted: int, duplicates: int) -> dict[str, object]:
        return {
            "acked_through": self.acked_through,
            "accepted": accepted,
            "duplicates": duplicates,
            "gaps": self.gaps(),
        }
