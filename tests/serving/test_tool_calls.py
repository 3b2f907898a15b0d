"""Tool calls, the gateway's side (``famous.serve.tool_calls``): when the gateway handles
the tools, what the engine is asked (forced, auto, none), what malformed tools and choices
get, and what the client gets back from an engine answer that is a call, a text, or
neither; which launches' templates render tools themselves. The real engines answer in
tests/realweights/test_real_gguf_serving.py."""

from __future__ import annotations

import asyncio
import http.server
import json
import threading
from pathlib import Path

import httpx
import pytest
from tiny_gguf import CHATML, write_llama

from famous.runtimes.base import EngineProcess, LaunchSpec
from famous.runtimes.llamacpp import LlamaCppPythonServer, LlamaServer
from famous.serve.app import create_app
from famous.serve.errors import APIError
from famous.serve.fields import FORWARDED, forwarded
from famous.serve.models import ModelSpec
from famous.serve.scheduler import Scheduler
from famous.serve.tool_calls import (
    completion,
    engine_request,
    stream_events,
    tool_plan,
    without_tools,
)

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
    plan = tool_plan(body)
    assert plan is not None and plan.choice == "required"
    request = engine_request(plan, body)
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
        {"tool_choice": "auto", "tools": [{"function": 1}]},
        {"tool_choice": None, "tools": "get_weather"},
    ],
)
def test_malformed_tools_or_choices_are_a_400_naming_the_field(change: dict) -> None:
    with pytest.raises(APIError) as info:
        tool_plan({**ASK, **change})
    assert info.value.status == 400 and info.value.param in ("tools", "tool_choice")


SCHEMA_ONLY = frozenset({"json_schema"})  # a llama.cpp engine whose template renders no tools
TEMPLATE_TOOLS = SCHEMA_ONLY | {"template_tools"}


def test_who_handles_the_tools() -> None:
    """The gateway, where the engine constrains answers and its template renders no tools
    (a forced call, always there); the engine, where its template renders them (auto,
    none) or where it cannot constrain an answer."""
    forced, auto = tool_plan(ASK), tool_plan({**ASK, "tool_choice": "auto"})
    none = tool_plan({**ASK, "tool_choice": "none"})
    assert forced and auto and none
    assert [p.choice for p in (forced, auto, none)] == ["required", "auto", "none"]
    assert all(p.applies(SCHEMA_ONLY) for p in (forced, auto, none))
    assert forced.applies(TEMPLATE_TOOLS)
    assert not auto.applies(TEMPLATE_TOOLS) and not none.applies(TEMPLATE_TOOLS)
    assert not any(p.applies(frozenset()) for p in (forced, auto, none))
    assert tool_plan({**ASK, "tool_choice": None, "tools": []}) is None
    assert tool_plan({k: v for k, v in ASK.items() if k not in ("tools", "tool_choice")}) is None
    own_format = {"type": "json_schema", "json_schema": {"name": "x", "schema": {}}}
    assert tool_plan({**ASK, "tool_choice": "auto", "response_format": own_format}).choice == (
        "none"
    )  # the client's own answer format wins: no call is offered


HISTORY = [
    {"role": "user", "content": "weather?"},
    {"role": "assistant", "content": None, "tool_calls": [
        {"id": "c1", "type": "function",
         "function": {"name": "get_weather", "arguments": '{"city": "Paris"}'}}]},
    {"role": "tool", "tool_call_id": "c1", "content": "sunny"},
]  # fmt: skip


def test_auto_asks_for_a_call_or_a_text_under_one_schema() -> None:
    body = forwarded("chat", {**ASK, "tool_choice": "auto", "messages": HISTORY})
    plan = tool_plan(body)
    assert plan is not None
    request = engine_request(plan, body)
    assert not {"tools", "tool_choice", "stream", "stream_options", "grammar"} & set(request)
    call, text = request["response_format"]["json_schema"]["schema"]["anyOf"]
    assert call["properties"]["name"] == {"const": "get_weather"}
    assert call["properties"]["arguments"] == WEATHER["function"]["parameters"]
    assert text["properties"] == {"content": {"type": "string"}}
    system, *history = request["messages"]
    assert system["role"] == "system" and "get_weather" in system["content"]
    assert '{"content"' in system["content"]  # when to answer in text
    assert [m["role"] for m in history] == ["user", "assistant", "user"]  # plain roles
    assert "sunny" in history[2]["content"] and "Paris" in history[1]["content"]


def test_none_drops_the_tools_and_keeps_the_stream() -> None:
    body = forwarded("chat", {**ASK, "tool_choice": "none", "messages": HISTORY})
    request = without_tools(body)
    assert not {"tools", "tool_choice"} & set(request) and request["stream"] is True
    assert [m["role"] for m in request["messages"]] == ["user", "assistant", "user"]
    assert "response_format" not in request


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


def _chunks(events: bytes) -> list[dict]:
    lines = events.decode().split("\n\n")
    assert lines[-2] == "data: [DONE]"
    return [json.loads(e[6:]) for e in lines if e.startswith("data: {")]


def test_auto_answers_a_text_or_a_call() -> None:
    text = _answer(json.dumps({"content": "It is sunny."}))
    whole = completion(text, text_allowed=True)["choices"][0]
    assert whole["message"] == {"role": "assistant", "content": "It is sunny."}
    assert whole["finish_reason"] == "stop"
    chunks = _chunks(stream_events(text, include_usage=True, text_allowed=True))
    assert chunks[0]["choices"][0]["delta"] == {"role": "assistant", "content": "It is sunny."}
    assert chunks[1]["choices"][0]["finish_reason"] == "stop"
    assert chunks[2]["choices"] == [] and chunks[2]["usage"] == {"completion_tokens": 3}
    call = _answer(json.dumps({"name": "get_weather", "arguments": {"city": "Paris"}}))
    choice = completion(call, text_allowed=True)["choices"][0]
    assert choice["finish_reason"] == "tool_calls" and choice["message"]["content"] is None
    chunks = _chunks(stream_events(call, include_usage=False, text_allowed=True))
    assert [c["choices"][0]["finish_reason"] for c in chunks] == [None, None, "tool_calls"]


def test_a_text_is_no_answer_to_a_forced_call() -> None:
    with pytest.raises(APIError) as info:
        completion(_answer(json.dumps({"content": "no"})))
    assert info.value.status == 502


def test_max_tokens_cuts_an_auto_text_short_but_not_a_call() -> None:
    cut = completion(_answer('{"content": "It is sunny \\u00e9t\\u00', "length"), True)
    assert cut["choices"][0]["message"]["content"] == "It is sunny \u00e9t"
    assert cut["choices"][0]["finish_reason"] == "length"
    quoted = completion(_answer('{"content": "done"', "length"), True)
    assert quoted["choices"][0]["message"]["content"] == "done"
    with pytest.raises(APIError) as info:
        completion(_answer('{"name": "get_weather", "argu', "length"), text_allowed=True)
    assert info.value.status == 400 and info.value.param == "max_tokens"


TOOLS_TEMPLATE = (
    "{% if tools %}{{ '<|im_start|>system\n' + (tools | tojson) + '<|im_end|>\n' }}{% endif %}"
    + CHATML
)


def test_a_template_that_renders_tools_is_left_to_the_engine(tmp_path: Path) -> None:
    """llama-server parses the calls of a template that renders tools; llama_cpp.server only
    under its function-calling chat formats (under a GGUF's template it would hand the call
    back as text), so there the gateway keeps the tools."""
    tools = write_llama(tmp_path / "tools.gguf", chat_template=TOOLS_TEMPLATE, vocab_size=300)
    plain = write_llama(tmp_path / "plain.gguf", chat_template=CHATML, vocab_size=300)
    native = LlamaServer({}, binary=Path("/bin/true"))
    assert native.launch_features(LaunchSpec(name="t", model_path=tools)) == TEMPLATE_TOOLS
    assert native.launch_features(LaunchSpec(name="p", model_path=plain)) == SCHEMA_ONLY
    python = LlamaCppPythonServer()
    assert python.launch_features(LaunchSpec(name="t", model_path=tools)) == SCHEMA_ONLY
    calling = LaunchSpec(
        name="c", model_path=plain, configuration={"chat-format": "chatml-function-calling"}
    )
    assert python.launch_features(calling) == TEMPLATE_TOOLS


# -- through the gateway, to an engine that records what it is sent ----------------------


class _Engine(http.server.BaseHTTPRequestHandler):
    """Answers health checks, and each chat request with the ``answer`` of its server."""

    def do_GET(self) -> None:
        self._send({"status": "ok"})

    def do_POST(self) -> None:
        engine = self.server
        assert isinstance(engine, _EngineServer)
        engine.received.append(json.loads(self.rfile.read(int(self.headers["content-length"]))))
        self._send(engine.answer)

    def _send(self, body: dict) -> None:
        data = json.dumps(body).encode()
        self.send_response(200)
        self.send_header("content-type", "application/json")
        self.send_header("content-length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def log_message(self, *args: object) -> None:
        pass


class _EngineServer(http.server.ThreadingHTTPServer):
    def __init__(self, answer: dict) -> None:
        super().__init__(("127.0.0.1", 0), _Engine)
        self.answer = answer
        self.received: list[dict] = []


class _Process(EngineProcess):
    """The engine above, as the scheduler sees a launched one (nothing to stop)."""

    def alive(self) -> bool:
        return True

    def stop(self, grace: float = 10.0) -> int:
        return 0


class _Models:
    def __init__(self, spec: ModelSpec) -> None:
        self.spec = spec

    def get(self, name: str) -> ModelSpec | None:
        return self.spec if name == self.spec.name else None

    def names(self) -> list[str]:
        return [self.spec.name]

    def all(self) -> list[ModelSpec]:
        return [self.spec]


def post_to_engine(
    server: http.server.HTTPServer, path: str, body: dict, features: frozenset[str] = frozenset()
) -> httpx.Response:
    """What a gateway in front of the engine ``server`` (a model ``m`` of ``features``)
    answers to ``body`` on ``path``; the server is shut down afterwards."""
    threading.Thread(target=server.serve_forever, daemon=True).start()

    def launch(spec: ModelSpec) -> EngineProcess:
        return _Process(spec.name, "llamacpp", "fake", [], "127.0.0.1", server.server_port,
                        Path("/nonexistent.log"), "/health", features=features)  # fmt: skip

    models = _Models(ModelSpec("m", Path("/m.gguf")))
    scheduler = Scheduler(models, launcher=launch, record=False)  # type: ignore[arg-type]

    async def ask() -> httpx.Response:
        transport = httpx.ASGITransport(app=create_app(scheduler))
        async with httpx.AsyncClient(transport=transport, base_url="http://127.0.0.1") as http:
            return await http.post(path, json=body)

    try:
        return asyncio.run(ask())
    finally:
        server.shutdown()


def _through_gateway(
    features: frozenset[str], body: dict, answer: dict
) -> tuple[dict, httpx.Response]:
    """(what the engine was sent, what the client got) for one chat request."""
    server = _EngineServer(answer)
    resp = post_to_engine(server, "/v1/chat/completions", body, features)
    assert resp.status_code == 200, resp.text
    (sent,) = server.received
    return sent, resp


AUTO = {k: v for k, v in ASK.items() if k not in ("stream", "grammar")} | {"tool_choice": "auto"}


def test_the_gateway_answers_auto_where_the_template_renders_no_tools() -> None:
    sent, got = _through_gateway(SCHEMA_ONLY, AUTO, _answer('{"content": "Sunny."}'))
    assert "anyOf" in sent["response_format"]["json_schema"]["schema"] and "tools" not in sent
    assert got.json()["choices"][0]["message"] == {"role": "assistant", "content": "Sunny."}
    streamed = {**AUTO, "stream": True, "stream_options": {"include_usage": True}}
    sent, got = _through_gateway(SCHEMA_ONLY, streamed, _answer('{"content": "Sunny."}'))
    assert "stream" not in sent and got.headers["content-type"].startswith("text/event-stream")
    chunks = _chunks(got.content)
    assert chunks[0]["choices"][0]["delta"]["content"] == "Sunny." and chunks[-1]["usage"]


def test_a_template_that_renders_tools_gets_the_request_unchanged() -> None:
    answer = _answer("from the engine")
    sent, got = _through_gateway(TEMPLATE_TOOLS, AUTO, answer)
    assert sent == forwarded("chat", AUTO) and got.json() == answer
    sent, _ = _through_gateway(TEMPLATE_TOOLS, {**AUTO, "tool_choice": "none"}, answer)
    assert sent["tools"] == [WEATHER]


def test_none_reaches_the_engine_without_tools() -> None:
    body = {**AUTO, "tool_choice": "none", "messages": HISTORY}
    sent, got = _through_gateway(SCHEMA_ONLY, body, _answer("It is sunny."))
    assert not {"tools", "tool_choice", "response_format"} & set(sent)
    assert [m["role"] for m in sent["messages"]] == ["user", "assistant", "user"]
    assert got.json()["choices"][0]["message"]["content"] == "It is sunny."


FOREIGN = {"llama_server_path": "/bin/sh", "model_path": "/etc/passwd", "slot_id": 3, "x": 1}


@pytest.mark.parametrize(
    "path, body",
    [
        ("/v1/chat/completions", {"model": "m", "messages": [{"role": "user", "content": "hi"}]}),
        ("/v1/responses", {"model": "m", "input": "hi", "store": False}),
        (
            "/v1/messages",
            {"model": "m", "max_tokens": 8, "messages": [{"role": "user", "content": "hi"}]},
        ),
        ("/api/chat", {"model": "m", "messages": [{"role": "user", "content": "hi"}]}),
        ("/api/generate", {"model": "m", "prompt": "hi"}),
    ],
)
def test_no_protocol_hands_the_engine_a_field_of_its_own(path: str, body: dict) -> None:
    """Fields a client adds (a program path, a file, an engine slot) reach no engine,
    whichever protocol carried them: engines get the checked OpenAI fields only."""
    server = _EngineServer(_answer("hello"))
    post_to_engine(server, path, {**body, **FOREIGN})
    assert server.received, path
    for sent in server.received:
        assert not set(FOREIGN) & set(sent), (path, sorted(sent))
        assert set(sent) <= FORWARDED["chat"] | FORWARDED["completions"], (path, sorted(sent))
