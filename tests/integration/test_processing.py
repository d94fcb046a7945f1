"""Finalisation end to end on the real stack: screenshots compressed and painted over,
scores and context stored, an archive that verifies, a poor session rejected with reasons."""

from __future__ import annotations

import hashlib
import io
import json
import time
import zipfile
from typing import Any

from PIL import Image

from actors.context.scoring import NO_STEPS
from tests.support.stack import run_db
from tests.support.client import Api, new_id
from tests.support.sessions import (CHECKOUT_FIELDS, T0, page_png, poor_session, record, shop_session,
                                    wait_terminal)

def test_good_session_ends_ready_with_scores_and_a_verified_archive(api: Api, stack: Any) -> None:
    events, shots = shop_session(200, 40)
    sid = record(api, events, shots, type="human", task="buy the blue kettle")
    view = wait_terminal(api, sid)
    assert view["status"] == "ready", view
    quality = view["quality"]
    for name in ("completeness", "selector_reliability", "screenshot_quality", "training_value", "overall"):
        assert 0.0 <= quality[name] <= 1.0
    assert quality["overall"] >= 0.45 and isinstance(quality["reasons"], list)

    archive = api.http.get(f"/v1/sessions/{sid}/archive")
    assert archive.status_code == 200 and archive.headers["content-type"] == "application/zip"
    assert hashlib.sha256(archive.content).hexdigest() == view["archive"]["sha256"]
    with zipfile.ZipFile(io.BytesIO(archive.content)) as zf:
        manifest = json.loads(zf.read("manifest.json"))
        for entry in manifest["files"]:
            assert hashlib.sha256(zf.read(entry["path"])).hexdigest() == entry["sha256"]
        lines = zf.read("events.jsonl").decode().splitlines()
        webps = [n for n in zf.namelist() if n.startswith("screenshots/")]
        analysis = json.loads(zf.read("analysis.json"))
    assert len(lines) == 200 and len(webps) == 40
    assert manifest["session"]["session_id"] == sid
    assert analysis["context"]["intent_counts"] and analysis["quality"]["overall"] == quality["overall"]

    rows = run_db(stack, "SELECT status, raw_key, webp_key, phash, local_vision FROM screenshots WHERE session_id = $1", sid)
    assert len(rows) == 40 and all(r["status"] == "compressed" and r["raw_key"] is None for r in rows)
    raw_dir = stack.settings.object_store.local_dir / "raw"
    assert not [p for p in raw_dir.rglob("*") if p.is_file() and sid in str(p)]


def test_sensitive_fields_are_painted_over_before_the_webp_is_stored(api: Api, stack: Any) -> None:
    events, shots = shop_session(200, 40)
    sid = record(api, events, shots, type="human", task="check out")
    assert wait_terminal(api, sid)["status"] in ("ready", "rejected")
    checkout = [s for s in shots if events[s[1]]["url"].endswith("checkout") and s[1] % 10 >= 1]
    assert checkout, "the crafted session has screenshots of the checkout form"
    shot_id = checkout[-1][0]
    got = api.http.get(f"/v1/sessions/{sid}/screenshots/{shot_id}")
    assert got.status_code == 200 and got.headers["content-type"] == "image/webp"
    img = Image.open(io.BytesIO(got.content)).convert("RGB")
    for box in CHECKOUT_FIELDS.values():
        centre = (box["x"] + box["width"] // 2, box["y"] + box["height"] // 2)
        assert max(img.getpixel(centre)) < 30, f"{box} still shows the field: {img.getpixel(centre)}"
    audit = {r["kind"]: r["count"] for r in run_db(
        stack, "SELECT kind, count FROM privacy_audit WHERE session_id = $1", sid)}
    assert audit.get("EMAIL", 0) >= 1 and audit.get("CARD", 0) >= 1 and audit.get("BOX", 0) >= 2


def test_poor_session_is_rejected_with_reasons(api: Api) -> None:
    sid = record(api, poor_session(), [])
    view = wait_terminal(api, sid)
    assert view["status"] == "rejected", view
    assert view["quality"]["overall"] < 0.45
    assert view["quality"]["reasons"] and view["quality"]["suggestions"]
    assert view["archive"] is not None  # rejected sessions are kept, never trained on


def test_scroll_only_session_is_rejected_for_having_no_action_step(api: Api) -> None:
    """Finished, described, with screenshots of every page: it scores well, but it yields no
    training example, so it ends rejected with that reason."""
    events = [{"seq": seq, "ts": T0 + seq * 700, "url": f"https://shop.example/p/{seq // 10}",
               **({"type": "navigation", "title": "Shop", "transition": "link"} if seq % 10 == 0
                  else {"type": "scroll", "x": 0, "y": seq * 10})} for seq in range(40)]
    shots = [(f"shot-{seq:04d}", seq, page_png(seq)) for seq in range(0, 40, 10)]
    view = wait_terminal(api, record(api, events, shots, type="human", task="look at kettles"))
    assert view["status"] == "rejected", view
    assert view["quality"]["reasons"][0] == NO_STEPS and view["quality"]["overall"] >= 0.45, view["quality"]


def test_events_are_paged_in_seq_order(api: Api) -> None:
    events, _ = shop_session(120, 0)
    sid = record(api, events, [])
    seen: list[int] = []
    after = -1
    while after is not None:
        page = api.http.get(f"/v1/sessions/{sid}/events", params={"after_seq": after, "limit": 50})
        assert page.status_code == 200, page.text
        body = page.json()
        seen += [e["seq"] for e in body["events"]]
        after = body["next_after_seq"]
    assert seen == list(range(120))
    for bad in ({"limit": 0}, {"limit": 100_000}, {"after_seq": "x"}, {"extra": 1}):
        answer = api.http.get(f"/v1/sessions/{sid}/events", params=bad)
        assert answer.status_code == 422 and answer.json()["error"]["code"], bad


def test_archive_of_a_recording_session_is_not_ready(api: Api) -> None:
    sid = api.create_session(session_id=new_id())
    answer = api.http.get(f"/v1/sessions/{sid}/archive")
    assert answer.status_code == 404 and answer.json()["error"]["code"] == "archive_not_ready"


def test_finalisation_resumes_after_its_shard_is_killed(api: Api, stack: Any) -> None:
    import uuid

    import ray

    from actors.ingest.shard_pool import ShardRouter

    events, shots = shop_session(200, 40)
    sid = record(api, events, shots, type="human", task="buy the blue kettle")
    deadline = time.monotonic() + 60
    while api.session(sid)["finalize_stage"] in (None, "screenshots") and time.monotonic() < deadline:
        time.sleep(0.05)
    before = api.session(sid)
    assert before["status"] == "finalizing", before  # the kill lands mid-way, past the screenshots
    shard = ShardRouter(stack.settings).for_session(uuid.UUID(sid))
    ray.kill(shard, no_restart=False)  # mid-finalisation: the restarted shard knows nothing
    assert api.http.get("/readyz").status_code in (200, 503)  # any call wakes the new shard's sweep
    view = wait_terminal(api, sid)
    assert view["status"] == "ready", view
    rows = run_db(stack, "SELECT count(*) AS n, count(*) FILTER (WHERE status = 'compressed') AS ok"
                         " FROM screenshots WHERE session_id = $1", sid)[0]
    assert rows["n"] == 40 and rows["ok"] == 40
    boxes = run_db(stack, "SELECT count FROM privacy_audit WHERE session_id = $1 AND kind = 'BOX'", sid)
    painted = run_db(stack, "SELECT sum(boxes_painted) AS n FROM screenshots WHERE session_id = $1", sid)[0]["n"]
    assert boxes[0]["count"] == painted  # each frame's boxes counted once, however often it ran
