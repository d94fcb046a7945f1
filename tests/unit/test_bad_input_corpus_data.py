"""The bad-input corpus is bad for the reason it names: each generated wrong-type body is
refused by its own model, the bases they vary are valid, and each hostile image is refused by
the ingress's image check with the status the case expects. No server here; the integration
test sends the same cases to one."""

from __future__ import annotations

import json

import pytest

from actors.errors import InvalidInput, PayloadTooLarge, UnsupportedMedia
from actors.ingest.events import parse_events
from serve_app.bodies import EventsBatch, FinishRequest, SessionCreate
from cluster.badinput.corpus import corpus
from cluster.badinput.data import hostile_images, valid_instance
from configs.dataset import DatasetBuildConfig
from configs.settings import IngestLimits
from serve_app.screenshots_api import MEDIA_TYPES, inspect_image
from serve_app.training_api import FineTuneCreate

MODELS = {"/v1/sessions": SessionCreate, "/v1/sessions/{id}/finish": FinishRequest,
          "/v1/datasets": DatasetBuildConfig, "/v1/finetunes": FineTuneCreate}


def test_the_corpus_is_large_unique_and_expects_only_refusals() -> None:
    cases = corpus()
    assert len(cases) >= 200 and len({c.label for c in cases}) == len(cases)
    for case in cases:
        codes = case.expect
        assert codes and all(400 <= c < 500 for c in codes) or case.method == "WS", case.label
    assert {c.category for c in cases} >= {"auth", "malformed_json", "wrong_type", "huge_nested", "unicode",
                                           "injection", "hostile_image", "websocket", "slow_upload"}


@pytest.mark.parametrize("model", [SessionCreate, FinishRequest, DatasetBuildConfig, FineTuneCreate])
def test_the_varied_bases_are_valid(model: type) -> None:
    model.model_validate(valid_instance(model.model_json_schema()))


def test_the_event_bases_are_valid() -> None:
    schema = EventsBatch.model_json_schema()
    events = [valid_instance(s, schema) for name, s in schema["$defs"].items() if name.endswith("Event")]
    assert len(parse_events(events, IngestLimits())) == len(events) == 10


def test_every_wrong_type_body_is_refused_by_its_model() -> None:
    checked = 0
    for case in corpus():
        if case.category != "wrong_type" or case.field is None:
            continue
        body = json.loads((case.body or b"").replace(b"@uuid@", b"00000000-0000-4000-8000-000000000000"))
        if case.route.endswith("/events"):
            with pytest.raises(InvalidInput):
                parse_events(body["events"], IngestLimits())
        else:
            with pytest.raises(ValueError):  # pydantic's ValidationError is a ValueError
                MODELS[case.route].model_validate(body)
        checked += 1
    assert checked >= 300


@pytest.mark.parametrize("name, media, body, expect", [i for i in hostile_images() if i[1] in MEDIA_TYPES],
                         ids=lambda v: v if isinstance(v, str) else "")
def test_hostile_images_are_refused_before_anything_is_stored(name: str, media: str, body: bytes,
                                                              expect: frozenset[int]) -> None:
    with pytest.raises((UnsupportedMedia, PayloadTooLarge)) as refused:
        inspect_image(body, media, IngestLimits().max_screenshot_pixels)
    assert (413 if isinstance(refused.value, PayloadTooLarge) else 415) in expect
