"""The four pages are served through pages_api.render_page: each gets the one shared head and
the one key / sign-in form, and what goes out keeps to the CSP (no inline code)."""

from __future__ import annotations

import re

import pytest

from serve_app.pages_api import PAGES, PAGES_DIR, render_page


@pytest.mark.parametrize("name", sorted(PAGES))
def test_each_page_gets_the_shared_head_and_sign_in_form_once(name: str) -> None:
    html = render_page(name).decode("utf-8")
    assert "shared:" not in html, "a placeholder left unfilled"
    assert html.startswith("<!doctype html>\n<html lang=\"en\">\n<head>\n  <meta charset=\"utf-8\">\n")
    for once in ('<meta name="referrer" content="no-referrer">', '<link rel="icon" href="data:,">',
                 '<form id="key-form"', '<form id="signin-form"', 'id="signin-password" type="password"',
                 '<p id="error" class="error" role="alert" hidden></p>'):
        assert html.count(once) == 1, (name, once)
    # The CSP (script-src 'self', style-src 'self') refuses inline code: every script is a file.
    assert re.findall(r"<script(?![^>]*\ssrc=)[^>]*>", html) == []
    assert not re.search(r"\sstyle=|\son[a-z]+=", html)


def test_the_page_files_hold_the_shared_parts_only_once_in_the_tree() -> None:
    for name, file in PAGES.items():
        text = (PAGES_DIR / file).read_text("utf-8")
        assert "<!-- shared:head -->" in text and "<!-- shared:signin -->" in text, name
        assert 'id="key-form"' not in text and 'charset="utf-8"' not in text, name


def test_a_page_asks_for_the_scopes_it_uses() -> None:
    assert "<code>review</code> to flag" in render_page("session").decode("utf-8")
    for name in set(PAGES) - {"session"}:
        html = render_page(name).decode("utf-8")
        assert "API key (scope <code>read</code>)" in html and "{key_scope}" not in html, name


def test_an_unknown_page_is_not_rendered() -> None:
    with pytest.raises(KeyError):
        render_page("secrets")
