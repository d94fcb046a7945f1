"""The test shop serves every page and asset, and its pages hold what the e2e tests rely on:
the checkout fields with labels, the password box, the modal, the pushState filters."""

from __future__ import annotations

import re
from collections.abc import Iterator

import httpx
import pytest

from tests.support.browser import Dom
from tests.support.shop_site import PAGES, PRODUCT_IDS, SHOP_DIR, serve_shop


@pytest.fixture(scope="module")
def shop() -> Iterator[str]:
    with serve_shop() as base:
        yield base


def get(shop: str, path: str) -> httpx.Response:
    return httpx.get(shop + path, timeout=10)


def test_every_page_and_asset_is_served(shop: str) -> None:
    assert re.fullmatch(r"http://127\.0\.0\.1:\d+", shop)
    for path in PAGES:
        response = get(shop, path)
        assert response.status_code == 200, path
        assert response.headers["content-type"].startswith("text/html"), path
        assert response.headers["cache-control"] == "no-store"
        dom = Dom(response.text)
        # Every page loads the shared script and stylesheet, and has the search box.
        sources = {n.attrs.get("src") for n in dom.root.descendants("script")}
        assert "/shop.js" in sources, path
        assert any(n.attrs.get("data-testid") == "search-input" for n in dom.root.descendants("input")), path
    assert get(shop, "/shop.js").headers["content-type"].startswith("text/javascript")
    assert get(shop, "/shop.css").headers["content-type"].startswith("text/css")
    assert get(shop, "/no-such-page.html").status_code == 404
    assert get(shop, "/../shop_site.py").status_code == 404  # nothing outside the shop directory


def test_products_in_the_catalogue_match_the_published_ids() -> None:
    script = (SHOP_DIR / "shop.js").read_text()
    assert tuple(re.findall(r'\{ id: "([a-z-]+)"', script)) == PRODUCT_IDS


def test_checkout_form_has_labelled_fields_and_a_password_box(shop: str) -> None:
    dom = Dom(get(shop, "/checkout.html").text)
    form = dom["checkout"]
    inputs = {n.attrs.get("id"): n.attrs for n in form.descendants("input")}
    expected = {"name": "text", "email": "email", "phone": "tel", "card-number": "text",
                "card-expiry": "text", "card-cvc": "text", "password": "password", "create-account": "checkbox"}
    for element_id, kind in expected.items():
        assert inputs[element_id]["type"] == kind, element_id
    assert inputs["card-number"]["autocomplete"] == "cc-number"
    assert inputs["password"]["autocomplete"] == "new-password"
    labelled = {n.attrs.get("for") for n in form.descendants("label")}
    assert {"name", "email", "phone", "card-number", "card-expiry", "card-cvc", "password"} <= labelled
    # The form has no action: it must never send its fields anywhere by itself.
    assert "action" not in form.attrs and "method" not in form.attrs
    buttons = [n for n in form.descendants("button") if n.attrs.get("data-testid") == "place-order"]
    assert buttons and buttons[0].text() == "Place order"


def test_product_page_has_the_added_to_cart_dialog(shop: str) -> None:
    dom = Dom(get(shop, "/product.html?id=blue-kettle").text)
    assert dom["added"].tag == "dialog"
    assert dom["added"].attrs.get("data-testid") == "added-dialog"
    assert dom["add"].attrs.get("data-testid") == "add-to-cart" and dom.text("add") == "Add to cart"
    assert "showModal()" in get(shop, "/product.html").text


def test_product_list_filters_use_history_push_state(shop: str) -> None:
    page = get(shop, "/products.html?category=tea").text
    assert "history.pushState" in page and "popstate" in page
    dom = Dom(page)
    filters = [n.attrs.get("data-testid") for n in dom.root.descendants("button") if n.attrs.get("data-category")]
    assert filters == ["filter-all", "filter-kettles", "filter-coffee", "filter-tea"]
