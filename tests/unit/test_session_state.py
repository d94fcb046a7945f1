"""acked_through and gaps, as PROTOCOL.md defines them."""

import uuid

from actors.ingest.session_state import MAX_GAPS_REPORTED, SessionState


def state() -> SessionState:
    return SessionState(uuid.uuid4(), uuid.uuid4(), "recording")


def test_empty_session_acks_minus_one() -> None:
    s = state()
    assert s.ack(0, 0) == {"acked_through": -1, "accepted": 0, "duplicates": 0, "gaps": []}
    assert s.max_seq == -1


def test_contiguous_prefix_and_gaps() -> None:
    s = state()
    s.apply(*s.advanced([0, 1, 2, 5, 6, 9]))
    assert s.acked_through == 2 and s.gaps() == [(3, 4), (7, 8)] and s.max_seq == 9
    assert s.is_stored(1) and s.is_stored(5) and not s.is_stored(3)
    s.apply(*s.advanced([3, 4]))
    assert s.acked_through == 6 and s.above == {9} and s.gaps() == [(7, 8)]
    s.apply(*s.advanced([7, 8]))
    assert s.acked_through == 9 and s.above == set() and s.gaps() == []


def test_gap_before_the_first_event() -> None:
    s = state()
    s.apply(*s.advanced([3]))
    assert s.acked_through == -1 and s.gaps() == [(0, 2)]


def test_advanced_does_not_change_the_state_until_applied() -> None:
    s = state()
    s.advanced([0, 1])
    assert s.acked_through == -1 and s.above == set()


def test_gap_list_is_bounded() -> None:
    s = state()
    s.apply(*s.advanced(range(1, 10_000, 2)))
    assert len(s.gaps()) == MAX_GAPS_REPORTED and s.gaps()[0] == (0, 0)
