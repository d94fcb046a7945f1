"""Headless Chromium with the recording extension loaded, driven over the DevTools protocol.

A small synchronous CDP client (websockets, already a dependency): no browser download, no
test framework between the test and the browser. Input goes through `Input.dispatch*`, so the
page and the extension's content script see trusted events, as from a person.

The browser runs in a process group of its own (see tests/support/browser.py): closing it kills
the whole group, which the `chromium` wrapper script alone would not.
"""

from __future__ import annotations

import itertools
import json
import queue
import subprocess
import threading
import time
from pathlib import Path
from typing import Any, Callable

from websockets.sync.client import ClientConnection, connect

from tests.support.browser import CHROMIUM_FLAGS, _kill_group, chromium

__all__ = ["Browser", "Page", "CdpError", "EXTENSION_DIR", "wait_until"]

EXTENSION_DIR = Path(__file__).resolve().parents[2] / "extension"


class CdpError(RuntimeError):
    pass


def wait_until(check: Callable[[], Any], timeout: float, what: str, interval: float = 0.1) -> Any:
    """Poll `check` until it returns something truthy; bounded, with a message on timeout."""
    deadline = time.monotonic() + timeout
    last: Any = None
    while time.monotonic() < deadline:
        last = check()
        if last:
            return last
        time.sleep(interval)
    raise AssertionError(f"timed out after {timeout}s waiting for {what}; last value: {last!r}")


class _Connection:
    """One WebSocket to the browser; commands of every attached target go through it."""

    def __init__(self, url: str):
        self.ws: ClientConnection = connect(url, max_size=2**28, open_timeout=10)
        self.ids = itertools.count(1)
        self.waiting: dict[int, queue.Queue[dict[str, Any]]] = {}
        self.lock = threading.Lock()
        self.reader = threading.Thread(target=self._read, name="cdp-reader", daemon=True)
        self.reader.start()

    def _read(self) -> None:
        try:
            for raw in self.ws:
                msg = json.loads(raw)
                if "id" in msg:
                    with self.lock:
                        box = self.waiting.pop(msg["id"], None)
                    if box is not None:
                        box.put(msg)
        except Exception:  # noqa: BLE001 - the browser went away; waiters time out with a message
            pass

    def call(self, method: str, params: dict[str, Any] | None = None, session: str | None = None,
             timeout: float = 30) -> dict[str, Any]:
        msg_id = next(self.ids)
        box: queue.Queue[dict[str, Any]] = queue.Queue(1)
        with self.lock:
            self.waiting[msg_id] = box
        msg: dict[str, Any] = {"id": msg_id, "method": method, "params": params or {}}
        if session:
            msg["sessionId"] = session
        self.ws.send(json.dumps(msg))
        try:
            answer = box.get(timeout=timeout)
        except queue.Empty:
            raise CdpError(f"{method}: no answer within {timeout}s") from None
        if "error" in answer:
            raise CdpError(f"{method}: {answer['error'].get('message')}")
        return dict(answer.get("result", {}))

    def close(self) -> None:
        self.ws.close()


class Page:
    """One attached target (a tab or the extension's service worker)."""

    def __init__(self, conn: _Connection, target_id: str, session: str):
        self.conn, self.target_id, self.session = conn, target_id, session

    def call(self, method: str, params: dict[str, Any] | None = None, timeout: float = 30) -> dict[str, Any]:
        return self.conn.call(method, params, self.session, timeout)

    def eval(self, expression: str, timeout: float = 30) -> Any:
        """The value of a JavaScript expression (promises awaited), or CdpError with its exception."""
        result = self.call("Runtime.evaluate", {"expression": expression, "awaitPromise": True,
                                                "returnByValue": True, "userGesture": True}, timeout)
        if "exceptionDetails" in result:
            details = result["exceptionDetails"]
            text = details.get("exception", {}).get("description") or details.get("text")
            raise CdpError(f"JavaScript error: {text}")
        return result["result"].get("value")

    def navigate(self, url: str, timeout: float = 20) -> None:
        self.call("Page.navigate", {"url": url})
        self.wait_loaded(lambda href: href == url or href.rstrip("/") == url.rstrip("/"), timeout)

    def wait_loaded(self, url_ok: Callable[[str], bool], timeout: float = 20) -> str:
        def ready() -> str | None:
            try:
                state = self.eval("[location.href, document.readyState]", timeout=5)
            except CdpError:
                return None  # between documents
            return state[0] if state and url_ok(state[0]) and state[1] == "complete" else None

        return str(wait_until(ready, timeout, "the page to load"))

    def center(self, selector: str) -> tuple[float, float]:
        box = self.eval(
            f"(() => {{ const el = document.querySelector({json.dumps(selector)});"
            " if (!el) return null; el.scrollIntoView({block: 'center'});"
            " const r = el.getBoundingClientRect(); return [r.x + r.width / 2, r.y + r.height / 2]; })()"
        )
        if not box:
            raise AssertionError(f"no element matches {selector}")
        return float(box[0]), float(box[1])

    def click(self, selector: str, count: int = 1) -> None:
        x, y = self.center(selector)
        self.call("Input.dispatchMouseEvent", {"type": "mouseMoved", "x": x, "y": y})
        for n in range(1, count + 1):
            for kind in ("mousePressed", "mouseReleased"):
                self.call("Input.dispatchMouseEvent",
                          {"type": kind, "x": x, "y": y, "button": "left", "clickCount": n})

    def type(self, selector: str, text: str) -> None:
        self.click(selector)
        for ch in text:
            self.call("Input.dispatchKeyEvent", {"type": "keyDown", "text": ch, "key": ch, "unmodifiedText": ch})
            self.call("Input.dispatchKeyEvent", {"type": "keyUp", "key": ch})

    _KEYS = {"Enter": (13, "\r"), "Escape": (27, ""), "Tab": (9, ""), "ArrowDown": (40, ""), "ArrowUp": (38, "")}

    def press(self, key: str) -> None:
        code, text = self._KEYS[key]
        down: dict[str, Any] = {"type": "keyDown" if text else "rawKeyDown", "key": key, "code": key,
                                "windowsVirtualKeyCode": code, "nativeVirtualKeyCode": code}
        if text:
            down["text"] = text
        self.call("Input.dispatchKeyEvent", down)
        self.call("Input.dispatchKeyEvent", {"type": "keyUp", "key": key, "code": key,
                                             "windowsVirtualKeyCode": code, "nativeVirtualKeyCode": code})


class Browser:
    """Chromium with the extension at `extension_dir` loaded unpacked, in a profile of its own."""

    def __init__(self, profile: Path, extension_dir: Path = EXTENSION_DIR):
        exe = chromium()
        if exe is None:
            raise RuntimeError("chromium is not installed (apt-get install chromium)")
        self.profile = profile
        profile.mkdir(parents=True, exist_ok=True)
        (profile / "DevToolsActivePort").unlink(missing_ok=True)
        args = [exe, *CHROMIUM_FLAGS, f"--user-data-dir={profile}", "--remote-debugging-port=0",
                f"--disable-extensions-except={extension_dir}", f"--load-extension={extension_dir}",
                "--window-size=1280,800", "about:blank"]
        self.log = open(profile.parent / f"{profile.name}-chromium.log", "wb")
        self.proc = subprocess.Popen(args, stdout=self.log, stderr=subprocess.STDOUT, start_new_session=True)
        try:
            port_file = profile / "DevToolsActivePort"
            lines = wait_until(lambda: _port_lines(port_file), 30, "chromium to open its DevTools port")
            self.conn = _Connection(f"ws://127.0.0.1:{lines[0]}{lines[1]}")
            self.extension_id = self._extension_id()
        except BaseException:
            self.close()
            raise

    def targets(self) -> list[dict[str, Any]]:
        return list(self.conn.call("Target.getTargets")["targetInfos"])

    def _extension_id(self) -> str:
        def find() -> str | None:
            for t in self.targets():
                if t["type"] == "service_worker" and t["url"].startswith("chrome-extension://"):
                    return str(t["url"].split("/")[2])
            return None

        return str(wait_until(find, 20, "the extension's service worker"))

    def attach(self, target_id: str) -> Page:
        session = self.conn.call("Target.attachToTarget", {"targetId": target_id, "flatten": True})["sessionId"]
        page = Page(self.conn, target_id, session)
        try:
            page.call("Page.enable")
        except CdpError:
            pass  # service workers have no Page domain
        return page

    def first_tab(self) -> Page:
        tab = next(t for t in self.targets() if t["type"] == "page")
        return self.attach(tab["targetId"])

    def open(self, url: str, new_window: bool = False) -> Page:
        target = self.conn.call("Target.createTarget", {"url": url, "newWindow": new_window})["targetId"]
        page = self.attach(target)
        page.wait_loaded(lambda href: href.startswith(url.split("#")[0].split("?")[0]))
        return page

    def extension_page(self, path: str) -> Page:
        """An extension page in a window of its own, so the recorded tab stays the visible one."""
        return self.open(f"chrome-extension://{self.extension_id}/{path}", new_window=True)

    def worker(self) -> Page:
        target = wait_until(lambda: next((t for t in self.targets() if t["type"] == "service_worker"
                                          and self.extension_id in t["url"]), None), 20, "the service worker")
        return self.attach(target["targetId"])

    def close_target(self, page: Page) -> None:
        self.conn.call("Target.closeTarget", {"targetId": page.target_id})

    def close(self) -> None:
        try:
            if getattr(self, "conn", None):
                try:
                    self.conn.call("Browser.close", timeout=5)
                except Exception:  # noqa: BLE001 - it is being killed anyway
                    pass
                self.conn.close()
        finally:
            try:
                self.proc.wait(timeout=5)
            except subprocess.TimeoutExpired:
                pass
            _kill_group(self.proc.pid)
            self.log.close()


def _port_lines(port_file: Path) -> list[str] | None:
    """(port, browser path) once the browser has written both lines (it writes them in pieces)."""
    if not port_file.exists():
        return None
    lines = port_file.read_text().split("\n")
    return lines[:2] if len(lines) >= 2 and lines[0].strip().isdigit() and lines[1].startswith("/") else None
