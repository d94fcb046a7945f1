"""Headless Chromium for e2e tests: dump a page's DOM after its scripts ran, and read it.

Debian's `chromium` is a shell wrapper that execs the real browser, which then starts its
zygote, renderer and utility processes; killing the wrapper's pid leaves them running. So the
browser runs in a session (process group) of its own, and the whole group is killed on a
timeout and once the dump is done.
"""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
from html.parser import HTMLParser
from pathlib import Path
from typing import Any

__all__ = ["CHROMIUM_FLAGS", "Dom", "chromium", "dump_dom"]

CHROMIUM_FLAGS = (
    "--headless=new",
    "--no-sandbox",  # tests run as root in containers, where the sandbox cannot start
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--no-first-run",
    "--disable-sync",
    "--disable-quic",
)


def chromium() -> str | None:
    return shutil.which("chromium")


def dump_dom(url: str, user_data_dir: Path, *, virtual_time_ms: int = 15_000, timeout_s: float = 60) -> str:
    """The serialised DOM of `url` once `virtual_time_ms` of virtual time has passed.

    With --virtual-time-budget the browser runs timers on a virtual clock that only advances
    while the page is idle (no network request pending), so a page that polls every 2 s
    gets several polls in a second or two of real time.
    """
    exe = chromium()
    if exe is None:
        raise RuntimeError("chromium is not installed (apt-get install chromium)")
    args = [exe, *CHROMIUM_FLAGS, f"--user-data-dir={user_data_dir}",
            f"--virtual-time-budget={virtual_time_ms}", "--dump-dom", url]
    proc = subprocess.Popen(args, stdout=subprocess.PIPE, stderr=subprocess.PIPE, start_new_session=True)
    try:
        out, err = proc.communicate(timeout=timeout_s)
    except subprocess.TimeoutExpired:
        _kill_group(proc.pid)
        out, err = proc.communicate()
        raise AssertionError(
            f"chromium did not finish within {timeout_s}s; stderr tail: {err.decode(errors='replace')[-2000:]}"
        ) from None
    finally:
        _kill_group(proc.pid)  # whatever of the browser outlived the dump
    if proc.returncode != 0 or not out.strip():
        raise AssertionError(f"chromium exited {proc.returncode}; stderr tail: {err.decode(errors='replace')[-2000:]}")
    return out.decode()


def _kill_group(pgid: int) -> None:
    try:
        os.killpg(pgid, signal.SIGKILL)
    except (ProcessLookupError, PermissionError):
        pass


_VOID = {"area", "base", "br", "col", "embed", "hr", "img", "input", "link", "meta", "source", "track", "wbr"}


class _Node:
    def __init__(self, tag: str, attrs: dict[str, str | None], parent: "_Node | None"):
        self.tag = tag
        self.attrs = attrs
        self.parent = parent
        self.children: list[_Node] = []
        self.text_parts: list[str] = []

    def text(self) -> str:
        return "".join(self.text_parts).strip()

    def descendants(self, tag: str | None = None) -> list["_Node"]:
        found: list[_Node] = []
        for child in self.children:
            if tag is None or child.tag == tag:
                found.append(child)
            found.extend(child.descendants(tag))
        return found


class Dom(HTMLParser):
    """A small reader of a dumped DOM: elements by id, their text and their descendants."""

    def __init__(self, html: str):
        super().__init__(convert_charrefs=True)
        self.root = _Node("#root", {}, None)
        self._open = [self.root]
        self.by_id: dict[str, _Node] = {}
        self.feed(html)
        self.close()

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        node = _Node(tag, dict(attrs), self._open[-1])
        self._open[-1].children.append(node)
        if node.attrs.get("id"):
            self.by_id[str(node.attrs["id"])] = node
        if tag not in _VOID:
            self._open.append(node)

    def handle_startendtag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        self.handle_starttag(tag, attrs)
        if tag not in _VOID:
            self._open.pop()

    def handle_endtag(self, tag: str) -> None:
        for i in range(len(self._open) - 1, 0, -1):
            if self._open[i].tag == tag:
                del self._open[i:]
                return

    def handle_data(self, data: str) -> None:
        for node in self._open:  # text belongs to every open ancestor
            node.text_parts.append(data)

    def __getitem__(self, element_id: str) -> Any:
        return self.by_id[element_id]

    def text(self, element_id: str) -> str:
        return self.by_id[element_id].text()
