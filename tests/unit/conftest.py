"""Unit tests run without Ray: any attempt to start it is a bug in the test or the code. The
OpenAI-compatible test server and a clean OpenAI environment are shared by the tests of the
OpenAI layer, the vision provider and the fine-tune provider."""

from collections.abc import Iterator

import pytest

from cluster.doubles.openai_server import OpenAITestServer

# The developer's own key or endpoint must not leak into a test.
OPENAI_ENV = ("OPENAI_API_KEY", "OPENAI_BASE_URL", "OPENAI_ADMIN_KEY", "OPENAI_CUSTOM_HEADERS")


@pytest.fixture(autouse=True)
def _no_ray(monkeypatch: pytest.MonkeyPatch) -> None:
    import ray

    def refuse(*_args: object, **_kwargs: object) -> None:
        raise RuntimeError("unit tests must not start Ray")

    monkeypatch.setattr(ray, "init", refuse)


@pytest.fixture(scope="module")
def server() -> Iterator[OpenAITestServer]:
    """One OpenAI-compatible server per test module, reset before each test that uses it."""
    with OpenAITestServer() as srv:
        yield srv


@pytest.fixture(autouse=True)
def _no_openai_env(request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch) -> None:
    for name in OPENAI_ENV:
        monkeypatch.delenv(name, raising=False)
    if "server" in request.fixturenames:
        request.getfixturevalue("server").reset()
