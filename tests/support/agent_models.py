"""Web-agent "models" for the OpenAI test server (`server.respond_as(name, responder)`).

* `Oracle`  primed with the examples, it answers each request with the recorded action of the
            example whose user text it was given (found by sha256 of that text); a request it
            was not primed for gets an answer that is not an action.
* `weak`    always clicks candidate 1 of the user text's candidate list, fenced in Markdown and
            wrapped in prose, as chatty models answer, so the parser's tolerance is exercised.
"""

from __future__ import annotations

import hashlib
import json
import re
from collections.abc import Iterable, Mapping
from typing import Any

__all__ = ["Oracle", "user_text", "weak", "weak_action"]

_CANDIDATE_1 = re.compile(r"^1\. <[^>]*> (?:(\".*?\") )?(\S.*)$", re.MULTILINE)


def user_text(messages: Iterable[Mapping[str, Any]]) -> str:
    """The text of the (last) user message, whether a string or text + image parts."""
    text = ""
    for msg in messages:
        if msg.get("role") != "user":
            continue
        content = msg.get("content")
        if isinstance(content, str):
            text = content
        elif isinstance(content, list):
            text = "".join(p.get("text", "") for p in content if p.get("type") == "text")
    return text


def _key(text: str) -> str:
    return hashlib.sha256(text.encode()).hexdigest()


class Oracle:
    def __init__(self, examples: Iterable[Mapping[str, Any]]):
        self.answers = {_key(user_text(ex["messages"][:-1])): ex["messages"][-1]["content"]
                        for ex in examples}

    def __call__(self, messages: list[dict[str, Any]]) -> str:
        return self.answers.get(_key(user_text(messages)), "I do not know this page.")


def weak_action(messages: Iterable[Mapping[str, Any]]) -> dict[str, Any]:
    """A click on the first listed candidate (no selector when none is listed)."""
    match = _CANDIDATE_1.search(user_text(messages))
    if match is None:
        return {"action": "click"}
    text, selector = match.group(1), match.group(2)
    action: dict[str, Any] = {"action": "click"}
    if selector != "(no selector)":
        action["selector"] = selector
    if text:
        action["element_text"] = json.loads(text)
    return action


def weak(messages: list[dict[str, Any]]) -> str:
    return f"Sure! Here is my next action:\n```json\n{json.dumps(weak_action(messages))}\n```"
