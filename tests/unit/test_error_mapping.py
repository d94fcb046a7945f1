"""Every error class maps to the status PROTOCOL.md gives it; bodies have the one shape."""

import json

import pytest

from actors import errors as E
from serve_app.error_responses import error_response, status_for


@pytest.mark.parametrize(
    "exc, status",
    [
        (E.MalformedInput("x"), 400), (E.Unauthenticated("x"), 401), (E.Forbidden("x"), 403),
        (E.NotFound("x"), 404), (E.Conflict("x"), 409), (E.SessionClosed("x"), 409),
        (E.PayloadTooLarge("x"), 413), (E.UnsupportedMedia("x"), 415), (E.InvalidInput("x"), 422),
        (E.Overloaded("x", 0.25), 429), (E.DependencyUnavailable("x", 2.0), 503),
        (E.TracemillError("x"), 500),
    ],
)
def test_status_for(exc: E.TracemillError, status: int) -> None:
    assert status_for(exc) == status


def test_retry_after_and_shape() -> None:
    response = error_response(E.Overloaded("busy", retry_after_s=0.25), "rid-1")
    assert response.status_code == 429 and response.headers["retry-after"] == "1"
    body = json.loads(response.body)
    assert body == {"error": {"code": "overloaded", "message": "busy", "details": [], "request_id": "rid-1"}}
    assert error_response(E.Unauthenticated("who"), "r").headers["www-authenticate"] == "Bearer"
