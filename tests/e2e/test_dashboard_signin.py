"""The dashboard's sign-in in a real headless Chromium: without a key or a refresh cookie the page
offers the sign-in form (its refresh attempt is answered 401 and it asks), and the form carries
no secret in the page."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.support.browser import Dom, chromium, dump_dom

needs_chromium = pytest.mark.skipif(chromium() is None, reason="chromium is not installed (.ci/run installs it)")


@needs_chromium
def test_without_a_key_or_cookie_the_page_offers_sign_in(stack: Any, tmp_path: Path) -> None:
    assert httpx.post(f"{stack.endpoint}/v1/auth/refresh").status_code == 401  # what the page meets
    dom = Dom(dump_dom(f"{stack.endpoint}/dashboard", tmp_path / "profile", virtual_time_ms=5000))
    assert "hidden" not in dom["signin-form"].attrs, "the page offers sign-in"
    assert "hidden" not in dom["key-form"].attrs, "keys still work"
    assert "hidden" in dom["signout"].attrs
    assert dom["signin-password"].attrs.get("type") == "password"
    assert dom.text("status-ready") == "–" and dom.text("error") == ""
