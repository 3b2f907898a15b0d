"""Anthropic's Messages API, the gateway's side (``famous.serve.protocols.anthropic``): the
request as the OpenAI chat body it becomes, OpenAI chunks as Anthropic's events, stop
sequences cut where they begin, errors in Anthropic's shape naming the field, and hostile
requests to the routes (in-process, over no models) answered 4xx. The real SDKs answer in
tests/realweights/test_real_anthropic.py."""

from __future__ import annotations

import asyncio
import http.server
import json
from typing import Any

import httpx
import pytest
from test_tool_calls import post_to_engine

from famous.serve.app import create_app
from famous.serve.errors import APIError
from famous.serve.models import ModelRegistry
from famous.serve.protocols.anthropic import (
    StopScanner,
    Translator,
    counting_request,
    error_response,
    fold,
    sse,
    stream_error,
    to_openai,
)
from famous.serve.scheduler import Scheduler

PNG = "iVBORw0KGgo="
TOOL = {"name": "get_weather", "input_schema": {"type": "object"}}
BASE = {"model": "m", "max_tokens": 16, "messages": [{"role": "user", "content": "hi"}]}


def test_a_conversation_becomes_openai_messages() -> None:
    payload = {
        **BASE,
        "system": [{"type": "text", "text": "Be brief."}, {"type": "text", "text": "Be kind."}],
        "messages": [
            {"role": "user", "content": [{"type": "text", "text": "weather?"}]},
            {
                "role": "assistant",
                "content": [
                    {"type": "thinking", "thinking": "hm", "signature": "s"},
                    {"type": "text", "text": "Let me look."},
                    {"type": "tool_use", "id": "toolu_1", "name": "get_weather", "input": {"a": 1}},
                ],
            },
            {
                "role": "user",
                "content": [
                    {"type": "tool_result", "tool_use_id": "toolu_1", "content": "sunny"},
                    {"type": "text", "text": "and "},
                    {
                        "type": "image",
                        "source": {"type": "base64", "media_type": "image/png", "data": PNG},
                    },
                ],
            },
        ],
        "tools": [TOOL],
        "tool_choice": {"type": "any", "disable_parallel_tool_use": True},
        "stop_sequences": ["\n\n"],
        "temperature": 0,
        "top_k": 5,
        "metadata": {"user_id": "u1"},
    }
    ask = to_openai(payload)
    body = ask.body
    assert ask.stop_sequences == ["\n\n"] and "stop" not in body  # the gateway applies them
    assert body["stream"] is True and body["stream_options"] == {"include_usage": True}
    assert body["tool_choice"] == "required" and body["parallel_tool_calls"] is False
    assert body["tools"][0]["function"]["parameters"] == {"type": "object"}
    assert (body["temperature"], body["top_k"], body["user"]) == (0, 5, "u1")
    roles = [m["role"] for m in body["messages"]]
    assert roles == ["system", "user", "assistant", "tool", "user"]
    assert body["messages"][0]["content"] == "Be brief.\nBe kind."
    call = body["messages"][2]["tool_calls"][0]
    assert call["id"] == "toolu_1" and json.loads(call["function"]["arguments"]) == {"a": 1}
    assert body["messages"][3] == {"role": "tool", "tool_call_id": "toolu_1", "content": "sunny"}
    image = body["messages"][4]["content"][1]
    assert image == {"type": "image_url", "image_url": {"url": f"data:image/png;base64,{PNG}"}}


@pytest.mark.parametrize(
    ("choice", "expected"),
    [
        ({"type": "auto"}, "auto"),
        ({"type": "none"}, "none"),
        (
            {"type": "tool", "name": "get_weather"},
            {"type": "function", "function": {"name": "get_weather"}},
        ),
    ],
)
def test_tool_choices(choice: dict, expected: Any) -> None:
    assert (
        to_openai({**BASE, "tools": [TOOL], "tool_choice": choice}).body["tool_choice"] == expected
    )


@pytest.mark.parametrize(
    ("change", "field"),
    [
        ({"max_tokens": None}, "max_tokens"),
        ({"model": 5}, "model"),
        ({"messages": []}, "messages"),
        ({"messages": [{"role": "system", "content": "x"}]}, "messages.0.role"),
        ({"messages": [{"role": "user", "content": 5}]}, "messages.0.content"),
        (
            {"messages": [{"role": "user", "content": [{"type": "document"}]}]},
            "messages.0.content.0",
        ),
        ({"messages": [{"role": "user", "content": [{"type": "text"}]}]}, "messages.0.content.0"),
        (
            {"messages": [{"role": "assistant", "content": [{"type": "tool_result"}]}]},
            "messages.0.content.0",
        ),
        (
            {
                "messages": [
                    {
                        "role": "user",
                        "content": [
                            {
                                "type": "image",
                                "source": {
                                    "type": "base64",
                                    "media_type": "image/bmp",
                                    "data": "x",
                                },
                            }
                        ],
                    }
                ]
            },
            "media_type",
        ),
        (
            {
                "messages": [
                    {"role": "user", "content": [{"type": "tool_result", "tool_use_id": 3}]}
                ]
            },
            "tool_use_id",
        ),
        (
            {
                "messages": [
                    {
                        "role": "assistant",
                        "content": [{"type": "tool_use", "id": "t", "name": "f", "input": []}],
                    }
                ]
            },
            "input",
        ),
        ({"system": 5}, "system"),
        ({"system": [{"type": "image"}]}, "system.0"),
        ({"tools": [{"name": "f"}]}, "tools.0.input_schema"),
        ({"tools": [{"type": "web_search_20250305", "name": "web_search"}]}, "tools.0.type"),
        ({"tools": "f"}, "tools"),
        ({"tool_choice": "any"}, "tool_choice"),
        ({"tool_choice": {"type": "tool"}}, "tool_choice"),
        ({"stop_sequences": "x"}, "stop_sequences"),
        ({"stop_sequences": [""]}, "stop_sequences"),
        ({"stream": "yes"}, "stream"),
        ({"metadata": []}, "metadata"),
        ({"metadata": {"user_id": 1}}, "metadata.user_id"),
    ],
)
def test_malformed_requests_name_the_field(change: dict, field: str) -> None:
    with pytest.raises(APIError) as caught:
        to_openai({**BASE, **change})
    assert caught.value.status == 400
    body = json.loads(error_response(caught.value).body)
    assert body["type"] == "error" and body["error"]["type"] == "invalid_request_error"
    assert field in body["error"]["message"]


def test_count_tokens_needs_no_max_tokens_and_counts_forced_tools_as_sent() -> None:
    ask = to_openai({**BASE, "max_tokens": None}, count=True)
    assert ask.body["max_tokens"] == 1 and "stream" not in ask.body
    forced = to_openai({**BASE, "tools": [TOOL], "tool_choice": {"type": "any"}}, count=True)
    counted = counting_request(forced.body)
    assert "tools" not in counted and counted["response_format"]["type"] == "json_schema"
    assert counted["messages"][0]["role"] == "system"


def test_errors_map_statuses_and_openai_field_names() -> None:
    cases = {401: "authentication_error", 404: "not_found_error", 503: "overloaded_error"}
    for status, kind in cases.items():
        assert json.loads(error_response(APIError(status, "x")).body)["error"]["type"] == kind
    assert json.loads(error_response(APIError(502, "x")).body)["error"]["type"] == "api_error"
    renamed = json.loads(error_response(APIError(400, "stop must be a list", param="stop")).body)
    assert renamed["error"]["message"] == "stop_sequences must be a list"


@pytest.mark.parametrize(
    "pieces", [["Hello wor", "ld. STOP", " more"], ["Hello world. S", "TO", "P"]]
)
def test_a_stop_sequence_is_found_across_pieces(pieces: list[str]) -> None:
    scanner = StopScanner(["STOP", "never"])
    passed, found = "", None
    for piece in pieces:
        text, found = scanner.feed(piece)
        passed += text
        if found:
            break
    assert (passed, found) == ("Hello world. ", "STOP")


def test_held_back_text_is_flushed_when_no_stop_comes() -> None:
    scanner = StopScanner(["STOP"])
    assert scanner.feed("a ST") == ("a ", None)
    assert scanner.feed("ART") == ("START", None)
    assert scanner.feed("x S") == ("x ", None) and scanner.flush() == "S"


def _chunk(delta: dict | None = None, finish: str | None = None, usage: dict | None = None) -> dict:
    choices = [] if delta is None else [{"index": 0, "delta": delta, "finish_reason": finish}]
    return {"choices": choices, **({"usage": usage} if usage else {})}


def _run(translator: Translator, chunks: list[dict]) -> tuple[list[dict], dict]:
    start = translator.start()
    events = [e for c in chunks for e in translator.feed(c)] + translator.finish()
    return [*start, *events], fold(start[0], events)


def test_text_then_a_tool_call_streams_as_anthropic_events() -> None:
    chunks = [
        _chunk({"role": "assistant", "content": "Let"}),
        _chunk({"content": " me."}),
        _chunk(
            {
                "tool_calls": [
                    {
                        "index": 0,
                        "id": "call_abc",
                        "type": "function",
                        "function": {"name": "f", "arguments": ""},
                    }
                ]
            }
        ),
        _chunk({"tool_calls": [{"index": 0, "function": {"arguments": '{"city": '}}]}),
        _chunk({"tool_calls": [{"index": 0, "function": {"arguments": '"Paris"}'}}]}),
        _chunk({}, finish="tool_calls"),
        _chunk(usage={"prompt_tokens": 11, "completion_tokens": 7}),
    ]
    events, message = _run(Translator("m", [], input_tokens=11), chunks)
    kinds = [e["type"] for e in events]
    assert kinds[:3] == ["message_start", "ping", "content_block_start"]
    assert kinds[-3:] == ["content_block_stop", "message_delta", "message_stop"]
    assert kinds.count("content_block_start") == kinds.count("content_block_stop") == 2
    assert events[0]["message"]["usage"]["input_tokens"] == 11
    deltas = [e["delta"]["type"] for e in events if e["type"] == "content_block_delta"]
    assert deltas == ["text_delta", "text_delta", "input_json_delta", "input_json_delta"]
    assert message["stop_reason"] == "tool_use" and message["stop_sequence"] is None
    assert message["content"] == [
        {"type": "text", "text": "Let me."},
        {"type": "tool_use", "id": "toolu_abc", "name": "f", "input": {"city": "Paris"}},
    ]
    assert message["usage"] == {"input_tokens": 11, "output_tokens": 7}


@pytest.mark.parametrize(("finish", "reason"), [("stop", "end_turn"), ("length", "max_tokens")])
def test_finish_reasons(finish: str, reason: str) -> None:
    _, message = _run(Translator("m", ["zz"]), [_chunk({"content": "a"}), _chunk({}, finish)])
    assert (message["stop_reason"], message["stop_sequence"]) == (reason, None)
    assert message["content"] == [{"type": "text", "text": "a"}]


def test_a_stop_sequence_ends_the_message_and_is_named() -> None:
    translator = Translator("m", ["."])
    chunks = [_chunk({"content": "Paris"}), _chunk({"content": ". Then"}), _chunk({"content": "x"})]
    _, message = _run(translator, chunks)
    assert translator.done
    assert message["content"] == [{"type": "text", "text": "Paris"}]
    assert (message["stop_reason"], message["stop_sequence"]) == ("stop_sequence", ".")
    assert message["usage"]["output_tokens"] == 2  # the chunks read up to the stop


def test_broken_tool_arguments_are_a_502() -> None:
    call = {"index": 0, "id": "c", "function": {"name": "f", "arguments": "{oops"}}
    with pytest.raises(APIError) as caught:
        _run(Translator("m", []), [_chunk({"tool_calls": [call]})])
    assert caught.value.status == 502


def test_an_engine_that_broke_off_becomes_an_error_event() -> None:
    broke = {"error": {"message": "the engine died", "code": "engine_failed"}}
    event = stream_error(broke)
    assert event == {"type": "error", "error": {"type": "api_error", "message": "the engine died"}}
    assert sse(event).startswith(b"event: error\ndata: {")
    drained = stream_error({"error": {"message": "bye", "code": "shutting_down"}})
    assert drained is not None and drained["error"]["type"] == "overloaded_error"
    assert stream_error({"choices": []}) is None


def _post(path: str, content: bytes, headers: dict[str, str], api_key: str | None = None):
    app = create_app(Scheduler(ModelRegistry([], use_store=False), record=False), api_key=api_key)

    async def go() -> httpx.Response:
        transport = httpx.ASGITransport(app=app, raise_app_exceptions=False)
        async with httpx.AsyncClient(transport=transport, base_url="http://127.0.0.1") as http:
            return await http.post(path, content=content, headers=headers)

    return asyncio.run(go())


JSON = {"content-type": "application/json", "anthropic-version": "2023-06-01"}
HOSTILE = [
    b"",
    b"[1]",
    b"{",
    b"[" * 5000,
    json.dumps({**BASE, "messages": [{"role": "user", "content": [[[[]]]]}]}).encode(),
    json.dumps({**BASE, "max_tokens": 10**400}).encode(),
    json.dumps({**BASE, "max_tokens": "12"}).encode(),
    json.dumps({**BASE, "temperature": "hot"}).encode(),
    json.dumps({**BASE, "model": "\ud800"}).encode(),
    json.dumps({**BASE, "tools": [{"name": "f", "input_schema": {"$ref": "http://x"}}]}).encode(),
    json.dumps({**BASE, "messages": [{"role": "user", "content": "x" * 100}] * 2000}).encode(),
]


@pytest.mark.parametrize("path", ["/v1/messages", "/v1/messages/count_tokens"])
@pytest.mark.parametrize("body", HOSTILE)
def test_hostile_bodies_get_anthropic_4xx(path: str, body: bytes) -> None:
    resp = _post(path, body, JSON)
    assert 400 <= resp.status_code < 500, resp.text[:300]
    error = resp.json()
    assert error["type"] == "error" and isinstance(error["error"]["message"], str)


def test_a_body_that_is_not_json_gets_anthropic_415() -> None:
    resp = _post("/v1/messages", b"{}", {"content-type": "text/plain"})
    assert resp.status_code == 415
    assert resp.json()["error"]["type"] == "invalid_request_error"


def test_an_unknown_model_is_not_found() -> None:
    resp = _post("/v1/messages", json.dumps({**BASE, "model": "nope"}).encode(), JSON)
    assert resp.status_code == 404 and resp.json()["error"]["type"] == "not_found_error"


def test_x_api_key_and_bearer_both_carry_the_key() -> None:
    body = json.dumps({**BASE, "model": "nope"}).encode()
    for headers in ({"x-api-key": "k"}, {"authorization": "Bearer k"}):
        assert _post("/v1/messages", body, JSON | headers, api_key="k").status_code == 404
    for headers in ({"x-api-key": "wrong"}, {}, {"x-api-key": ""}):
        resp = _post("/v1/messages", body, JSON | headers, api_key="k")
        assert resp.status_code == 401
        assert resp.json()["error"]["type"] == "authentication_error"
    # the OpenAI routes keep their rule: a bearer token only
    chat = json.dumps({"model": "nope", "messages": [{"role": "user", "content": "hi"}]}).encode()
    assert _post("/v1/chat/completions", chat, JSON | {"x-api-key": "k"}, "k").status_code == 401


# -- through the gateway, to an engine that streams what a test gives it ---------------------


class _StreamingEngine(http.server.BaseHTTPRequestHandler):
    """Streams its server's ``chunks`` as OpenAI events (to a request for a stream); with
    ``broken``, closes the connection before the answer is complete."""

    def do_GET(self) -> None:
        self._write(b'{"status": "ok"}', "application/json")

    def do_POST(self) -> None:
        engine = self.server
        assert isinstance(engine, _EngineServer)
        body = json.loads(self.rfile.read(int(self.headers["content-length"])))
        engine.received.append(body)
        if not body.get("stream"):  # the count of the prompt
            self._write(json.dumps({"choices": [], "usage": {"prompt_tokens": 5}}).encode())
            return
        events = b"".join(b"data: " + json.dumps(c).encode() + b"\n\n" for c in engine.chunks)
        events += b"" if engine.broken else b"data: [DONE]\n\n"
        self._write(events, "text/event-stream", declared=len(events) + 100 * engine.broken)

    def _write(self, data: bytes, kind: str = "application/json", declared: int = 0) -> None:
        self.send_response(200)
        self.send_header("content-type", kind)
        self.send_header("content-length", str(declared or len(data)))
        self.end_headers()
        self.wfile.write(data)

    def log_message(self, *args: object) -> None:
        pass


class _EngineServer(http.server.ThreadingHTTPServer):
    def __init__(self, chunks: list[dict], broken: bool) -> None:
        super().__init__(("127.0.0.1", 0), _StreamingEngine)
        self.chunks, self.broken = chunks, broken
        self.received: list[dict] = []


def _through_gateway(
    body: dict, chunks: list[dict], broken: bool = False
) -> tuple[list[dict], httpx.Response]:
    """(what the engine was sent, what the client got) for one Messages request."""
    server = _EngineServer(chunks, broken)
    return server.received, post_to_engine(server, "/v1/messages", body)


def _events(resp: httpx.Response) -> list[dict]:
    return [json.loads(line[6:]) for line in resp.text.splitlines() if line.startswith("data: ")]


TEXT = [_chunk({"role": "assistant", "content": "Hello"}), _chunk({"content": " world"})]
END = [_chunk({}, "stop"), _chunk(usage={"prompt_tokens": 5, "completion_tokens": 2})]


def test_a_stream_through_the_gateway() -> None:
    sent, resp = _through_gateway({**BASE, "stream": True}, TEXT + END)
    assert resp.status_code == 200 and resp.headers["content-type"].startswith("text/event-stream")
    kinds = [event["type"] for event in _events(resp)]
    block = ["content_block_start", "content_block_delta", "content_block_delta"]
    ending = ["content_block_stop", "message_delta", "message_stop"]
    assert kinds == ["message_start", "ping", *block, *ending]
    assert "event: message_start\n" in resp.text
    assert [body.get("stream") for body in sent] == [None, True]  # the count, then the answer
    assert _events(resp)[0]["message"]["usage"]["input_tokens"] == 5


def test_a_stop_sequence_through_the_gateway_is_never_sent_to_the_engine() -> None:
    sent, resp = _through_gateway({**BASE, "stop_sequences": [" wor"]}, TEXT + END)
    assert "stop" not in sent[0]
    message = resp.json()
    assert message["content"] == [{"type": "text", "text": "Hello"}]
    assert (message["stop_reason"], message["stop_sequence"]) == ("stop_sequence", " wor")
    assert message["usage"] == {"input_tokens": 5, "output_tokens": 2}


def test_an_engine_that_breaks_off_ends_the_stream_with_an_error_event() -> None:
    _, resp = _through_gateway({**BASE, "stream": True}, TEXT, broken=True)
    events = _events(resp)
    assert events[-1]["type"] == "error" and events[-1]["error"]["type"] == "api_error"
    assert "event: error\n" in resp.text
    _, whole = _through_gateway(BASE, TEXT, broken=True)
    assert whole.status_code == 502 and whole.json()["error"]["type"] == "api_error"


def test_an_unknown_route_under_messages_is_anthropic_shaped() -> None:
    resp = _post("/v1/messages/batches", b"{}", JSON)
    assert resp.status_code in (404, 405) and resp.json()["type"] == "error"
    assert resp.json()["error"]["type"] in ("not_found_error", "invalid_request_error")
