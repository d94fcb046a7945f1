"""The API docs page in headless Chromium: Swagger UI, served by the API itself from the
swagger-ui-bundle package, renders every route under the page's strict CSP (no CDN, no
inline script)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from tests.support.browser import chromium
from tests.support.cdp import Browser, wait_until
from tests.support.client import Api

pytestmark = pytest.mark.skipif(chromium() is None, reason="chromium is not installed (.ci/run installs it)")


def test_swagger_ui_renders_under_its_csp(api: Api, tmp_path: Path) -> None:
    browser = Browser(tmp_path / "profile")
    try:
        page = browser.open(api.base_url + "/docs")
        count = wait_until(lambda: page.eval("document.querySelectorAll('.opblock').length"), 30,
                           "Swagger UI to render the routes")
        assert count >= 10
        shown: Any = page.eval("[...document.querySelectorAll('.opblock-summary-path')].map(e => e.textContent)")
        assert any("/v1/sessions/{session_id}/events" in text for text in shown), shown
        sources = page.eval("[...document.scripts].map(s => s.src)")
        assert sources and all(src.startswith(api.base_url + "/docs/assets/") for src in sources), sources
    finally:
        browser.close()
