"""The recording extension in headless Chromium, driven as a person would: the options page to
point it at an endpoint, the popup to start and stop, and the test shop for a search-to-checkout
task. Shared by the e2e tests, the demo recording (tests/e2e/record_demo.py) and the
measurement script (tests/e2e/measure_extension.py).

Before each action the driver keeps the page's DOM (`Step`): the events' selectors are later
resolved against the page exactly as it was when the event was recorded.
"""

from __future__ import annotations

import json
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

from tests.support.cdp import Browser, Page, wait_until

__all__ = ["Recorder", "Step", "CHECKOUT", "shop_task"]

# What the test types into the checkout: none of it may reach the server unmasked.
CHECKOUT = {
    "name": "Jane Q. Tester",
    "email": "jane.tester.e2e@example.org",
    "phone": "+1 415 555 0199",
    "card": "4539 1488 0343 6467",  # Luhn-valid, and no other test plants it
    "expiry": "12/29",
    "cvc": "737",
    "password": "Hunter2-Secret-Pw!",
}


@dataclass
class Step:
    name: str
    at_ms: int
    url: str
    html: str


@dataclass
class Recorder:
    browser: Browser
    tab: Page
    steps: list[Step] = field(default_factory=list)

    @classmethod
    def launch(cls, profile: Path) -> "Recorder":
        browser = Browser(profile)
        try:
            return cls(browser, browser.first_tab())
        except BaseException:
            browser.close()
            raise

    def close(self) -> None:
        self.browser.close()

    # -------------------------------------------------------------- the extension's own pages

    def configure(self, endpoint: str, api_key: str, **extra: Any) -> str:
        """Fill the options page and save; returns what the page said."""
        page = self.browser.extension_page("options/options.html")
        try:
            page.eval(f"document.getElementById('endpoint').value = {json.dumps(endpoint)};"
                      f"document.getElementById('apiKey').value = {json.dumps(api_key)};"
                      "document.getElementById('save').click(); 1")
            said = str(wait_until(lambda: page.eval("document.getElementById('result').textContent"), 5,
                                  "the options page to answer"))
            if extra:  # delivery tuning that the page does not show (measurements only)
                page.eval(f"chrome.storage.local.get('config').then(({{config}}) => "
                          f"chrome.storage.local.set({{config: {{...config, ...{json.dumps(extra)}}}}}))")
            return said
        finally:
            self.browser.close_target(page)

    def popup(self, action: str | None = None, task: str = "") -> dict[str, Any]:
        """Open the popup (in a window of its own), optionally press start/stop; its state."""
        page = self.browser.extension_page("popup/popup.html")
        try:
            if action == "start":
                page.eval(f"document.getElementById('task').value = {json.dumps(task)}; 1")
            if action:
                page.click(f"#{action}")
                want = "recording" if action == "start" else ("finishing", "idle")
                wait_until(lambda: page.eval("document.getElementById('state').dataset.state") in want, 10,
                           f"the popup to show the {action}")
            return self.popup_state(page)
        finally:
            self.browser.close_target(page)
            self.browser.conn.call("Target.activateTarget", {"targetId": self.tab.target_id})

    @staticmethod
    def popup_state(page: Page) -> dict[str, Any]:
        return dict(page.eval(
            "Object.fromEntries(['state','session','recorded','acked','queued','shots','connection','problem']"
            ".map((id) => [id, document.getElementById(id).textContent]))"))

    def status(self) -> dict[str, Any]:
        """The service worker's published status (what the popup shows), read from its storage."""
        worker = self.browser.worker()
        try:
            return dict(worker.eval("chrome.storage.local.get('status').then((s) => s.status || {})") or {})
        finally:  # an attached debugger keeps a service worker alive: do not stay attached
            self.browser.conn.call("Target.detachFromTarget", {"sessionId": worker.session})

    def worker_eval(self, expression: str) -> Any:
        """Evaluate in the service worker (e.g. `tracemill.delivery.connects`), then detach."""
        worker = self.browser.worker()
        try:
            return worker.eval(expression)
        finally:
            self.browser.conn.call("Target.detachFromTarget", {"sessionId": worker.session})

    def wait_delivered(self, timeout: float = 30) -> dict[str, Any]:
        def done() -> dict[str, Any] | None:
            s = self.status()
            return s if s.get("recorded") and s.get("queued") == 0 and s.get("acked") == s.get("recorded") else None

        return dict(wait_until(done, timeout, "every recorded event to be acked", interval=0.25))

    def stop(self, sid: str, timeout: float = 30) -> int:
        """Stop from the popup and wait for the extension to finish the session on the server;
        the number of events it recorded (late screenshots included)."""
        self.popup("stop")

        def done() -> int | None:
            last = self.status().get("lastSession") or {}
            return int(last["events"]) if last.get("id") == sid else None

        return int(wait_until(done, timeout, "the extension to finish the session", interval=0.25))

    # -------------------------------------------------------------- acting on the page

    def step(self, name: str, action: Callable[[], Any]) -> Any:
        html, url = self.tab.eval("[document.documentElement.outerHTML, location.href]")
        self.steps.append(Step(name, int(time.time() * 1000), url, html))
        return action()

    def settle(self, seconds: float = 0.7) -> None:
        """Let debounced input and the screenshot that follows an action happen (bounded)."""
        time.sleep(seconds)


def shop_task(rec: Recorder, base: str, *, until: str | None = None, after: str | None = None) -> None:
    """Search for a kettle, filter, open it, add it to the cart, view the cart, check out.

    `until`/`after` split the task at a named step (the outage test cuts the endpoint there).
    """
    tab = rec.tab
    steps: list[tuple[str, Callable[[], Any]]] = [
        ("home", lambda: tab.navigate(base + "/")),
        ("search", lambda: (tab.type("[data-testid=search-input]", "kettle"), tab.press("Enter"),
                            tab.wait_loaded(lambda h: "q=kettle" in h))),
        ("filter", lambda: tab.click("[data-testid=filter-kettles]")),
        ("scroll", lambda: tab.call("Input.dispatchMouseEvent", {"type": "mouseWheel", "x": 400, "y": 400,
                                                                 "deltaX": 0, "deltaY": 300})),
        ("product", lambda: (tab.click("[data-testid=product-card-blue-kettle] h3 a"),
                             tab.wait_loaded(lambda h: "product.html?id=blue-kettle" in h))),
        ("reviews-tab", lambda: tab.click(".tabs div:nth-child(2)")),
        ("add-to-cart", lambda: tab.click("[data-testid=add-to-cart]")),
        ("view-cart", lambda: (tab.click("#added button.primary"), tab.wait_loaded(lambda h: h.endswith("/cart.html")))),
        ("checkout", lambda: (tab.click("[data-testid=checkout-link]"), tab.wait_loaded(lambda h: h.endswith("/checkout.html")))),
        ("name", lambda: tab.type("#name", CHECKOUT["name"])),
        ("email", lambda: tab.type("#email", CHECKOUT["email"])),
        ("phone", lambda: tab.type("#phone", CHECKOUT["phone"])),
        ("card", lambda: tab.type("#card-number", CHECKOUT["card"])),
        ("expiry", lambda: tab.type("#card-expiry", CHECKOUT["expiry"])),
        ("cvc", lambda: tab.type("#card-cvc", CHECKOUT["cvc"])),
        ("create-account", lambda: tab.click("#create-account")),
        ("password", lambda: tab.type("#password", CHECKOUT["password"])),
        ("place-order", lambda: (tab.click("[data-testid=place-order]"),
                                 tab.wait_loaded(lambda h: "/confirmation.html?order=" in h))),
    ]
    names = [n for n, _ in steps]
    first = names.index(after) + 1 if after else 0
    last = names.index(until) + 1 if until else len(steps)
    for name, action in steps[first:last]:
        rec.step(name, action)
        rec.settle()
    rec.step("end", lambda: None)  # the DOM the last page showed, for its snapshot's selectors
