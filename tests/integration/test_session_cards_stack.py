"""Session cards and sentiment on the stack (issue 19.1, 19.2): a finalised session gets a local
card, a contact sheet in the object store, a sentiment summary the list filters on, all in its
archive; the cards task with the chat model of the local OpenAI-compatible server (the real
`openai` client over HTTP), answered once and then from the cache, and the local card when the
server errors or is not there."""

from __future__ import annotations

import io
import json
import socket
import uuid
import zipfile
from collections.abc import Iterator
from typing import Any

import pytest
import ray
from PIL import Image

from actors.cards.task import cards_task
from cluster.doubles.openai_server import OpenAITestServer
from configs.settings import TracemillSettings
from tests.support.client import Api
from tests.support.sessions import T0, record, shop_session, wait_terminal
from tests.support.stack import make_key, run_db

CARD = {"title": "Kettle bought after a fight with the cart",
        "caption": "The person searched for a kettle and added it to the cart. The cart button needed several clicks."}


@pytest.fixture(scope="module")
def openai_server() -> Iterator[OpenAITestServer]:
    with OpenAITestServer() as server:
        yield server


def _feedback(events: list[dict[str, Any]], text: str) -> list[dict[str, Any]]:
    seq = len(events)
    return events + [{"seq": seq, "ts": T0 + seq * 700, "type": "input", "url": "https://shop.example/checkout",
                      "value": text, "target": {"tag": "textarea", "attributes": {"name": "feedback"},
                                                "bbox": {"x": 10, "y": 10, "width": 300, "height": 80}}}]


def _finished(api: Api, text: str) -> str:
    events, shots = shop_session(60, 6)
    sid = record(api, _feedback(events, text), shots, type="human", task="buy a kettle")
    assert wait_terminal(api, sid)["status"] in ("ready", "rejected")
    return sid


def _card(stack: Any, sid: str) -> dict[str, Any]:
    row = run_db(stack, "SELECT card_title, caption, card::text AS card, sentiment::text AS sentiment,"
                        " sentiment_label FROM sessions WHERE session_id = $1", sid)[0]
    return {"title": row["card_title"], "caption": row["caption"], "card": json.loads(row["card"]),
            "sentiment": json.loads(row["sentiment"]), "label": row["sentiment_label"]}


def _settings(stack: Any, server_url: str, **cards: Any) -> TracemillSettings:
    data = stack.settings.to_args()
    data["cards"] = {"provider": "openai", "base_url": server_url, "api_key": "sk-test-not-a-real-key",
                     "backoff_base_s": 0.01, "backoff_max_s": 0.2, "max_attempts": 2, **cards}
    return TracemillSettings.build(data)


def test_finalised_session_has_a_local_card_sheet_and_sentiment(api: Api, stack: Any) -> None:
    sid = _finished(api, "terrible checkout, the pay button never worked and I hate it")
    card = _card(stack, sid)
    assert card["card"]["source"] == "local" and card["title"].endswith("on shop.example")
    assert "searched" in card["caption"] and card["caption"].endswith(".")
    assert card["label"] == "negative" and card["sentiment"]["texts"] >= 1
    assert "hate" not in json.dumps(card["sentiment"]) and "hate" not in json.dumps(card["card"])
    frames = card["card"]["sheet_frames"]
    assert frames and any(f["boxed"] for f in frames)

    listed = api.http.get("/v1/sessions", params={"sentiment": "negative", "limit": 100}).json()["items"]
    mine = [i for i in listed if i["session_id"] == sid]
    assert mine and mine[0]["card_title"] == card["title"] and mine[0]["caption"] == card["caption"]
    assert mine[0]["sentiment"] == "negative" and mine[0]["sentiment_polarity"] < 0
    positive = api.http.get("/v1/sessions", params={"sentiment": "positive", "limit": 100}).json()["items"]
    assert sid not in {i["session_id"] for i in positive}
    assert api.http.get("/v1/sessions", params={"sentiment": "angry"}).status_code == 422

    bundle = api.http.get(f"/v1/sessions/{sid}/replay").json()  # what the replay page shows
    assert bundle["card"]["caption"] == card["caption"] and bundle["sentiment"]["label"] == "negative"

    archive = zipfile.ZipFile(io.BytesIO(api.http.get(f"/v1/sessions/{sid}/archive").content))
    stored = json.loads(archive.read("card.json"))
    assert stored["card"]["title"] == card["title"] and stored["sentiment"]["label"] == "negative"
    with Image.open(io.BytesIO(archive.read("contact-sheet.webp"))) as sheet:
        assert sheet.format == "WEBP" and sheet.width >= 400


def test_model_card_once_then_from_the_cache(api: Api, stack: Any, openai_server: OpenAITestServer) -> None:
    openai_server.reset()
    openai_server.respond_as("card-model", lambda messages: json.dumps(CARD))
    sid = _finished(api, "lovely shop, great kettle, thanks")
    settings = _settings(stack, openai_server.base_url, model="card-model")
    ray.get(cards_task.remote(settings, uuid.UUID(sid)), timeout=120)
    assert openai_server.request_count == 1
    request = openai_server.requests[0]
    assert request.model == "card-model" and request.response_format_type == "json_object"
    card = _card(stack, sid)
    assert (card["title"], card["caption"]) == (CARD["title"], CARD["caption"])
    assert card["card"]["source"] == "model" and card["card"]["cached"] is False
    assert card["card"]["tokens_in"] > 0 and card["label"] == "positive"

    ray.get(cards_task.remote(settings, uuid.UUID(sid)), timeout=120)  # the same prompt again
    assert openai_server.request_count == 1
    assert _card(stack, sid)["card"]["cached"] is True
    hits = run_db(stack, "SELECT kind, model, hits FROM inference_cache WHERE model = 'card-model'")
    assert [(h["kind"], h["hits"]) for h in hits] == [("card", 1)]


def test_the_local_card_when_the_server_errors_or_is_absent(api: Api, stack: Any,
                                                            openai_server: OpenAITestServer) -> None:
    sid = _finished(api, "where is my order")
    local = _card(stack, sid)
    openai_server.reset()
    openai_server.default = "500"
    ray.get(cards_task.remote(_settings(stack, openai_server.base_url, model="failing"), uuid.UUID(sid)), timeout=120)
    assert openai_server.request_count == 2  # max_attempts
    card = _card(stack, sid)
    assert card["card"]["source"] == "local" and card["card"]["reason"] == "model failed (http_500)"
    assert (card["title"], card["caption"]) == (local["title"], local["caption"])
    # A reply that is not a card (the server's default page analysis) is no better.
    openai_server.reset()
    ray.get(cards_task.remote(_settings(stack, openai_server.base_url, model="other"), uuid.UUID(sid)), timeout=120)
    assert openai_server.request_count == 2 and _card(stack, sid)["card"]["reason"] == "model failed (unusable_reply)"

    with socket.socket() as s:  # a port nothing listens on
        s.bind(("127.0.0.1", 0))
        closed = f"http://127.0.0.1:{s.getsockname()[1]}/v1"
    ray.get(cards_task.remote(_settings(stack, closed, model="absent"), uuid.UUID(sid)), timeout=120)
    assert _card(stack, sid)["card"]["reason"] == "model failed (connection_error)"
    assert run_db(stack, "SELECT count(*) AS n FROM inference_cache WHERE model IN ('failing', 'other', 'absent')")[0]["n"] == 0


def test_sentiment_by_the_model_is_cached_and_falls_back_to_the_lexicon(api: Api, stack: Any,
                                                                       openai_server: OpenAITestServer) -> None:
    sid = _finished(api, "the delivery options are fine I suppose")
    openai_server.reset()
    openai_server.respond_as("mood", lambda messages: json.dumps({"polarity": -0.8, "confidence": 0.9}))
    data = stack.settings.to_args()
    data["sentiment"] = {"provider": "openai", "model": "mood", "base_url": openai_server.base_url,
                         "api_key": "sk-test-not-a-real-key", "backoff_base_s": 0.01, "backoff_max_s": 0.2}
    settings = TracemillSettings.build(data)
    ray.get(cards_task.remote(settings, uuid.UUID(sid)), timeout=120)
    first = openai_server.request_count
    card = _card(stack, sid)
    assert first == card["sentiment"]["texts"] >= 1
    assert card["label"] == "negative" and {i["source"] for i in card["sentiment"]["items"]} == {"model"}
    ray.get(cards_task.remote(settings, uuid.UUID(sid)), timeout=120)
    assert openai_server.request_count == first
    openai_server.default = "500"
    data["sentiment"]["model"] = "mood-down"
    ray.get(cards_task.remote(TracemillSettings.build(data), uuid.UUID(sid)), timeout=120)
    assert {i["source"] for i in _card(stack, sid)["sentiment"]["items"]} == {"lexicon"}


def test_reviewers_flag_notes_get_a_sentiment(stack: Any, api: Api) -> None:
    sid = _finished(api, "ok")
    reviewer = Api(stack.endpoint, make_key(stack, ["read", "review"]))
    flag = reviewer.http.post(f"/v1/sessions/{sid}/flags",
                              json={"seq": None, "reason": "other", "note": "awful, clearly broken recording"})
    assert flag.status_code == 201, flag.text
    mood = flag.json()["note_sentiment"]
    assert mood["label"] == "negative" and mood["polarity"] < 0 < mood["confidence"]
    moved = reviewer.http.patch(f"/v1/flags/{flag.json()['flag_id']}", json={"state": "reviewed", "note": "great, fixed it"})
    assert moved.status_code == 200 and moved.json()["note_sentiment"]["label"] == "positive"
    listed = reviewer.http.get(f"/v1/sessions/{sid}/flags").json()["items"]
    assert listed[0]["note_sentiment"]["label"] == "positive"
