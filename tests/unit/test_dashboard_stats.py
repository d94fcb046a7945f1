"""The dashboard's pure parts: the quality histogram and the stats query parameters."""

from __future__ import annotations

import pytest
from starlette.requests import Request

from actors.errors import InvalidInput
from serve_app.dashboard_api import _stats_query, quality_histogram


def test_histogram_has_ten_bins_over_zero_to_one_and_one_falls_in_the_last() -> None:
    bins = quality_histogram([0.0, 0.05, 0.1, 0.45, 0.99, 1.0, float("nan"), -0.2, 1.3])
    assert [(b["lo"], b["hi"]) for b in bins] == [(i / 10, (i + 1) / 10) for i in range(10)]
    assert [b["count"] for b in bins] == [3, 1, 0, 0, 1, 0, 0, 0, 0, 3]
    assert sum(b["count"] for b in quality_histogram([])) == 0


def _request(query: str) -> Request:
    return Request({"type": "http", "method": "GET", "path": "/v1/stats", "query_string": query.encode(), "headers": []})


def test_stats_query_defaults_bounds_and_unknown_parameters() -> None:
    assert _stats_query(_request("")).limit == 20
    assert _stats_query(_request("limit=100")).limit == 100
    for bad in ("limit=0", "limit=101", "limit=x", "limit=-3", "other=1"):
        with pytest.raises(InvalidInput) as caught:
            _stats_query(_request(bad))
        assert caught.value.details and caught.value.details[0]["field"].startswith("query"), bad
