"""Ollama's requests onto OpenAI bodies and OpenAI's stream back onto Ollama's objects:
the pure half of ``famous.serve.protocols.ollama``."""

from __future__ import annotations

import base64
import json

import pytest

from famous.serve import sse
from famous.serve.errors import APIError
from famous.serve.protocols import ollama

PNG = base64.b64encode(b"\x89PNG\r\n\x1a\n" + b"\0" * 16).decode()


def test_chat_maps_options_format_images_and_tool_history() -> None:
    body = ollama.chat_request(
        {
            "model": "smollm2:latest",
            "messages": [
                {"role": "user", "content": "look", "images": [PNG]},
                {
                    "role": "assistant",
                    "content": "",
                    "tool_calls": [{"function": {"name": "f", "arguments": {"x": 1}}}],
                },
                {"role": "tool", "content": "42", "tool_name": "f"},
            ],
            "options": {"num_predict": 7, "temperature": 0, "top_k": 3, "stop": ["\n"]},
            "format": {"type": "object"},
        }
    )
    assert body["model"] == "smollm2" and body["stream"] is True
    assert body["stream_options"] == {"include_usage": True}
    assert (body["max_tokens"], body["temperature"], body["top_k"], body["stop"]) == (
        7,
        0,
        3,
        ["\n"],
    )
    assert body["response_format"]["json_schema"]["schema"] == {"type": "object"}
    parts = body["messages"][0]["content"]
    assert parts[1]["image_url"]["url"] == f"data:image/png;base64,{PNG}"
    call = body["messages"][1]["tool_calls"][0]
    assert json.loads(call["function"]["arguments"]) == {"x": 1}
    assert body["messages"][2]["tool_call_id"] == call["id"]


def test_generate_is_a_chat_unless_raw() -> None:
    chat = ollama.generate_request({"model": "m", "prompt": "hi", "system": "be brief"})
    assert [m["role"] for m in chat["messages"]] == ["system", "user"]
    raw = ollama.generate_request({"model": "m", "prompt": "hi", "raw": True, "format": "json"})
    assert raw["prompt"] == "hi" and raw["response_format"] == {"type": "json_object"}


@pytest.mark.parametrize(
    ("payload", "field"),
    [
        ({"options": {"num_ctx": 8192}}, "options.num_ctx"),
        ({"options": {"num_predict": 0}}, "options"),
        ({"format": "yaml"}, "format"),
        ({"keep_alive": "a while"}, "keep_alive"),
        ({"messages": [{"role": "user", "images": ["bm90IGFuIGltYWdl"]}]}, "messages[0].images[0]"),
    ],
)
def test_refusals_name_the_field(payload: dict, field: str) -> None:
    with pytest.raises(APIError) as refused:
        ollama.keep_alive_seconds(payload.get("keep_alive"))  # the route reads it first
        ollama.chat_request({"model": "m", "messages": [], **payload})
    assert field in ollama.error_body(refused.value)["error"]


def test_keep_alive_durations() -> None:
    assert ollama.keep_alive_seconds("1h30m") == 5400
    assert ollama.keep_alive_seconds(-1) == -1
    assert ollama.keep_alive_seconds("0") == 0
    assert ollama.keep_alive_seconds(None) is None


def _sse(*events: dict | str) -> bytes:
    return b"".join(
        b"data: " + (e.encode() if isinstance(e, str) else json.dumps(e).encode()) + b"\n\n"
        for e in events
    )


def test_a_stream_split_anywhere_gives_the_same_objects() -> None:
    raw = _sse(
        {"choices": [{"delta": {"role": "assistant", "content": "Par"}}]},
        {"choices": [{"delta": {"content": "is"}, "finish_reason": "length"}]},
        {"choices": [], "usage": {"prompt_tokens": 5, "completion_tokens": 2}},
        "[DONE]",
    )
    for cut in range(1, len(raw)):
        stream, reader, out = ollama.ChatStream("m", "message"), sse.EventReader(), []
        for piece in (raw[:cut], raw[cut:]):
            for event in sse.chunks(reader, piece):
                out += [stream.final()] if event is None else stream.feed(event)
        assert [o["message"]["content"] for o in out] == ["Par", "is", ""]
        final = out[-1]
        assert final["done"] and final["done_reason"] == "length"
        assert (final["prompt_eval_count"], final["eval_count"]) == (5, 2)
        assert ollama.merged(out)["message"]["content"] == "Paris"


def test_streamed_tool_calls_end_whole_and_errors_end_the_stream() -> None:
    stream = ollama.ChatStream("m", "message")
    for piece in ('{"city": ', '"Paris"}'):
        call = {
            "index": 0,
            "function": {"name": "" if "Paris" in piece else "w", "arguments": piece},
        }
        stream.feed({"choices": [{"delta": {"tool_calls": [call]}}]})
    final = stream.final()
    assert final["message"]["tool_calls"] == [
        {"function": {"name": "w", "arguments": {"city": "Paris"}}}
    ]
    broken = ollama.ChatStream("m", "response")
    assert broken.feed({"error": {"message": "engine exited"}}) == [{"error": "engine exited"}]
    assert broken.finished
