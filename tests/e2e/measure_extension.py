"""Figures of the recording extension, written to results/extension.json:

1. events captured per interaction on the search-to-checkout task (tests/support/recorder.py);
2. bytes sent per minute: at the task's scripted pace, and for a person-paced minute (one act
   every 5 s), counted on the wire by a TCP proxy between the browser and Serve (HTTP and
   WebSocket framing included), beside the extension's own payload counters;
3. what the extension does while the endpoint is down for five minutes (the proxy is cut; a
   person keeps acting every 10 s): queue size, reconnect attempts and what the popup says,
   sampled every 30 s; then the time to drain once it is back, and whether anything was lost
   or stored twice.

    python -m tests.e2e.measure_extension                # the real five minutes (~8 min in all)
    TM_MEASURE_OUTAGE_S=60 python -m tests.e2e.measure_extension   # shorter, for a quick look

Not part of the test suite (pytest collects test_*.py only); it runs through pytest for the
tests' stack fixture.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from collections import Counter
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import pytest

from tests.e2e.test_extension import TASK, events_of
from tests.support.cdp import wait_until
from tests.support.client import Api
from tests.support.recorder import Recorder, shop_task
from tests.support.shop_site import serve_shop
from tests.support.stack import make_key
from tests.support.tcp_proxy import TcpProxy

OUT = Path(__file__).resolve().parents[2] / "results" / "extension.json"
OUTAGE_S = float(os.environ.get("TM_MEASURE_OUTAGE_S", "300"))
COMMAND = "python -m tests.e2e.measure_extension"


def finished(api: Api, sid: str) -> dict[str, Any]:
    return dict(wait_until(lambda: (v := api.session(sid))["status"] != "recording" and v, 60, "the finish"))


def person_act(rec: Recorder, n: int) -> None:
    """One act of a person browsing the product list: a filter (an SPA navigation) or a scroll."""
    if n % 3 == 2:
        rec.tab.call("Input.dispatchMouseEvent", {"type": "mouseWheel", "x": 400, "y": 400, "deltaX": 0,
                                                  "deltaY": 200 if n % 2 else -200})
    else:
        rec.tab.click(f"[data-testid=filter-{('kettles', 'coffee', 'tea', 'all')[n % 4]}]")


@pytest.mark.timeout(OUTAGE_S + 420)
def test_measure(stack: Any, api: Api, tmp_path: Path) -> None:
    key = make_key(stack, ["ingest"])
    proxy = TcpProxy("127.0.0.1", urlsplit(stack.endpoint).port or 80)
    rec = Recorder.launch(tmp_path / "profile")
    results: dict[str, Any] = {"command": COMMAND, "measured_at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
                               "browser": subprocess.run(["chromium", "--version"], capture_output=True,
                                                         text=True).stdout.strip()}
    try:
        with serve_shop() as base:
            assert rec.configure(proxy.url, key) == "Saved."

            # 1 and 2a: the task.
            up0, t0 = proxy.bytes_up, time.monotonic()
            sid = rec.popup("start", task=TASK)["session"]
            shop_task(rec, base)
            status = rec.wait_delivered()
            seconds = time.monotonic() - t0
            rec.popup("stop")
            finished(api, sid)
            status = wait_until(lambda: (s := rec.status()).get("lastSession") and s, 10, "the status after the finish")
            up = proxy.bytes_up - up0
            events = events_of(api, sid)
            acts = len([s for s in rec.steps if s.name != "end"])
            results["task"] = {
                "interactions": acts,
                "interactions_are": "the 18 steps of tests/support/recorder.py shop_task (open the shop, search, "
                                    "filter, scroll, open a product, a tab, add to cart, view cart, checkout, "
                                    "7 fields typed, a checkbox, place order)",
                "events": len(events), "events_per_interaction": round(len(events) / acts, 2),
                "events_by_type": dict(Counter(e["type"] for e in events).most_common()),
                "seconds": round(seconds, 1), "bytes_on_the_wire_up": up,
                "bytes_per_interaction": round(up / acts),
                "bytes_per_minute_at_this_pace": round(up / (seconds / 60)),
                "extension_payload_bytes": {"events": status.get("bytesEvents"), "screenshots": status.get("bytesShots")},
            }

            # 2b and 3: a person-paced minute, then the endpoint gone for OUTAGE_S while they go on.
            rec.tab.navigate(base + "/products.html")
            sid = rec.popup("start", task="Browse the catalogue")["session"]
            up0, t0 = proxy.bytes_up, time.monotonic()
            n = 0
            while time.monotonic() - t0 < 60:
                person_act(rec, n)
                n += 1
                time.sleep(max(0.0, t0 + 5 * n - time.monotonic()))
            minute = rec.wait_delivered()
            time.sleep(1)  # the last screenshot's upload
            minute = rec.status()
            results["person_paced_minute"] = {
                "interactions": n, "events": minute["recorded"],
                "bytes_on_the_wire_up": proxy.bytes_up - up0,
                "extension_payload_bytes": {"events": minute["bytesEvents"] - status["bytesEvents"],
                                            "screenshots": minute["bytesShots"] - status["bytesShots"]},
            }

            proxy.cut()
            cut_at = time.monotonic()
            samples = []
            connects0 = int(rec.status().get("connects") or 0)
            k = 0
            while (elapsed := time.monotonic() - cut_at) < OUTAGE_S:
                person_act(rec, n)
                n, k = n + 1, k + 1
                if int(elapsed) // 30 >= len(samples):
                    s = rec.status()
                    store = rec.worker_eval("navigator.storage.estimate().then((e) => e.usage)")
                    samples.append({"t_s": round(elapsed), "queued_events": s.get("queued"),
                                    "screenshots_waiting": s.get("shotsQueued"),
                                    "websocket_attempts": int(s.get("connects") or 0) - connects0,
                                    "extension_storage_bytes": store, "connection": s.get("connection"),
                                    "popup_says": s.get("problem")})
                time.sleep(max(0.0, min(cut_at + OUTAGE_S, cut_at + 10 * k) - time.monotonic()))
            during = rec.status()
            proxy.restore()
            back = time.monotonic()
            drained = rec.wait_delivered(timeout=90)
            wait_until(lambda: not rec.status().get("shotsQueued"), 60, "the screenshots to upload")
            drain_s = time.monotonic() - back
            rec.popup("stop")
            view = finished(api, sid)
            stored = events_of(api, sid)
            shots = [e for e in stored if e["type"] == "screenshot"]
            wait_until(lambda: api.session(sid)["screenshot_count"] == len(shots), 30, "every screenshot stored")
            results["outage"] = {
                "seconds_down": OUTAGE_S, "backoff": "exponential from 0.5 s, capped at 30 s, jittered (the default)",
                "interactions_while_down": k,
                "samples_every_30_s": samples,
                "queued_when_back": during.get("queued"), "screenshots_waiting_when_back": during.get("shotsQueued"),
                "websocket_attempts_while_down": int(during.get("connects") or 0) - connects0,
                "seconds_to_drain_after_back": round(drain_s, 1),
                "recorded": drained["recorded"], "stored": len(stored), "event_count": view["event_count"],
                "lost": drained["recorded"] - len({e["seq"] for e in stored}),
                "stored_twice": len(stored) - len({e["seq"] for e in stored}),
                "dense_seq": [e["seq"] for e in stored] == list(range(len(stored))),
                "screenshots_stored": api.session(sid)["screenshot_count"], "screenshot_events": len(shots),
            }
    finally:
        rec.close()
        proxy.close()
    OUT.parent.mkdir(exist_ok=True)
    OUT.write_text(json.dumps(results, indent=2) + "\n")
    assert results["outage"]["lost"] == 0 and results["outage"]["stored_twice"] == 0

def main() -> int:
    code = pytest.main([f"{__file__}::test_measure", "-q", "-x", "-s", "--basetemp=/tmp/pt-ext", "-p", "no:cacheprovider"])
    if code == 0:
        print(OUT.read_text())
    return int(code)


if __name__ == "__main__":
    sys.exit(main())
