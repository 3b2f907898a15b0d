"""Forced tool calls, the gateway's side (``famous.serve.tool_calls``): what the engine is
asked, what malformed tools and choices get, and what the client gets back from an engine
answer that is, or is not, a call. The real engines answer in
tests/realweights/test_real_gguf_serving.py."""

from __future__ import annotations

import json

import pytest

from famous.serve.errors import APIError
from famous.serve.fields import forwarded
from famous.serve.tool_calls import completion, engine_request, forced_call, stream_events

WEATHER = {
    "type": "function",
    "function": {
        "name": "get_weather",
        "parameters": {"type": "object", "properties": {"city": {"type": "string"}}},
    },
}
ASK = {
    "model": "m",
    "messages": [{"role": "user", "content": "weather?"}],
    "tools": [WEATHER],
    "tool_choice": "required",
    "stream": True,
    "grammar": "root ::= (((",  # never meant for the engine
}


def _answer(content: str, finish: str = "stop") -> dict:
    message = {"role": "assistant", "content": content}
    return {"id": "x", "created": 1, "model": "m", "usage": {"completion_tokens": 3},
            "choices": [{"index": 0, "message": message, "finish_reason": finish}]}  # fmt: skip


def test_the_engine_is_asked_for_a_call_under_the_tools_schema_and_nothing_else() -> None:
    body = forwarded("chat", ASK)
    call = forced_call(body)
    assert call is not None
    request = engine_request(call, body)
    assert not {"tools", "tool_choice", "stream", "grammar"} & set(request)
    schema = request["response_format"]["json_schema"]["schema"]
    assert schema["properties"]["name"] == {"const": "get_weather"}
    assert request["messages"][0]["role"] == "system"  # the tools, described


@pytest.mark.parametrize(
    "change",
    [
        {"tools": []},
        {"tools": [{"function": 1}]},
        {"tools": [{"type": "function", "function": {"name": "f", "parameters": [1]}}]},
        {"tool_choice": {"type": "function", "function": {"name": "nope"}}},
        {"tool_choice": {"type": "function", "function": {"name": 5}}},
        {"tool_choice": 7},
    ],
)
def test_malformed_tools_or_choices_are_a_400_naming_the_field(change: dict) -> None:
    with pytest.raises(APIError) as info:
        forced_call({**ASK, **change})
    assert info.value.status == 400 and info.value.param in ("tools", "tool_choice")


def test_auto_and_none_leave_the_request_alone() -> None:
    assert forced_call({**ASK, "tool_choice": "auto"}) is None
    assert forced_call({**ASK, "tool_choice": "none"}) is None


def test_a_call_becomes_openais_message_and_deltas() -> None:
    answer = _answer(json.dumps({"name": "get_weather", "arguments": {"city": "Paris"}}))
    (call,) = completion(answer)["choices"][0]["message"]["tool_calls"]
    assert json.loads(call["function"]["arguments"]) == {"city": "Paris"}
    events = stream_events(answer, include_usage=True).decode().split("\n\n")
    chunks = [json.loads(e[6:]) for e in events if e.startswith("data: {")]
    assert chunks[0]["choices"][0]["delta"]["tool_calls"][0]["function"]["name"] == "get_weather"
    assert "name" not in chunks[1]["choices"][0]["delta"]["tool_calls"][0]["function"]
    assert chunks[2]["choices"][0]["finish_reason"] == "tool_calls"
    assert chunks[3]["usage"] == {"completion_tokens": 3} and events[-2] == "data: [DONE]"


def test_an_answer_that_is_no_call_is_an_error_not_a_crash() -> None:
    with pytest.raises(APIError) as cut:
        completion(_answer('{"name": "get_wea', finish="length"))
    assert cut.value.status == 400 and cut.value.param == "max_tokens"
    with pytest.raises(APIError) as wrong:
        completion(_answer("plain text"))
    assert wrong.value.status == 502
    with pytest.raises(APIError):
        completion({"choices": []})
