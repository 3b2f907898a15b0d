"""OpenAI's Responses API: the translation onto chat and back (pure), the store of responses
(retention), what a hostile client gets (in-process, over no models: a 4xx naming the
field), and the official SDK against a gateway on the tiny GGUF (shapes, event order, usage
equal streamed and not: a random-weight model's words mean nothing).
"""

from __future__ import annotations

import asyncio
import json
import time
from pathlib import Path
from typing import Any

import httpx
import openai
import pytest
from serving_harness import Gateway

from famous.serve import sse
from famous.serve.app import create_app
from famous.serve.errors import APIError
from famous.serve.models import ModelRegistry
from famous.serve.protocols import responses as protocol
from famous.serve.scheduler import Scheduler
from famous.store.responses import ResponseStore

WEATHER = {"type": "function", "name": "get_weather", "parameters": {"type": "object"}}


def _turn(**payload: Any) -> protocol.Turn:
    return protocol.parse({"model": "m", "input": "hi", **payload})


def test_a_request_becomes_a_chat_body() -> None:
    turn = _turn(
        instructions="be brief",
        tools=[WEATHER],
        tool_choice={"type": "function", "name": "get_weather"},
        text={"format": {"type": "json_schema", "name": "x", "schema": {}, "strict": True}},
        max_output_tokens=7,
        temperature=0.5,
        stream=True,
    )
    body = protocol.chat_body(turn, [])
    assert body["messages"] == [
        {"role": "system", "content": "be brief"},
        {"role": "user", "content": "hi"},
    ]
    function = {"name": "get_weather", "parameters": {"type": "object"}}
    assert body["tools"] == [{"type": "function", "function": function}]
    assert body["tool_choice"] == {"type": "function", "function": {"name": "get_weather"}}
    assert body["response_format"] == {
        "type": "json_schema",
        "json_schema": {"name": "x", "schema": {}, "strict": True},
    }
    assert body["max_tokens"] == 7 and body["temperature"] == 0.5
    assert body["stream_options"] == {"include_usage": True}
    assert protocol.chat_body(_turn(text={"format": {"type": "json_object"}}), [])[
        "response_format"
    ] == {"type": "json_object"}


def test_items_become_chat_turns() -> None:
    """Developer messages are system ones, parts join (images stay parts), consecutive calls
    make one assistant message, outputs are tool messages; history comes first."""
    image = "data:image/png;base64,AAAA"
    items = [
        {"role": "developer", "content": "rules"},
        {"type": "message", "role": "user", "content": [
            {"type": "input_text", "text": "look"}, {"type": "input_image", "image_url": image},
        ]},
        {"type": "function_call", "call_id": "c1", "name": "a", "arguments": "{}"},
        {"type": "function_call", "call_id": "c2", "name": "b", "arguments": "{}"},
        {"type": "function_call_output", "call_id": "c1", "output": "one"},
        {"type": "function_call_output", "call_id": "c2", "output": [
            {"type": "input_text", "text": "two"},
        ]},
    ]  # fmt: skip
    history = [{"role": "assistant", "content": [{"type": "output_text", "text": "before"}]}]
    chat = protocol.chat_body(_turn(input=items), history)["messages"]
    assert [m["role"] for m in chat] == ["assistant", "system", "user", "assistant", "tool", "tool"]
    assert chat[0]["content"] == "before"
    assert chat[2]["content"][1] == {"type": "image_url", "image_url": {"url": image}}
    assert [c["id"] for c in chat[3]["tool_calls"]] == ["c1", "c2"]
    assert chat[5] == {"role": "tool", "tool_call_id": "c2", "content": "two"}


def _user(part: dict[str, Any]) -> dict[str, Any]:
    return {"input": [{"role": "user", "content": [part]}]}


MALFORMED = [
    ({"input": 5}, "input"),
    ({"input": [5]}, "input[0]"),
    ({"input": [{"role": "tool", "content": "x"}]}, "input[0].role"),
    ({"input": [{"role": "user", "content": []}]}, "input[0].content"),
    (_user({"type": "input_file"}), "input[0].content[0].type"),
    (_user({"type": "input_text"}), "input[0].content[0].text"),
    (_user({"type": "input_image", "file_id": "f"}), "input[0].content[0].image_url"),
    ({"input": [{"type": "function_call", "name": "a", "arguments": "{}"}]}, "input[0].call_id"),
    ({"input": [{"type": "function_call_output", "call_id": "c"}]}, "input[0].output"),
    ({"input": [{"type": "reasoning"}]}, "input[0].type"),
    ({"input": []}, "input"),
    ({"model": 5}, "model"),
    ({"instructions": ["x"]}, "instructions"),
    ({"tools": {"type": "function"}}, "tools"),
    ({"tools": [{"type": "web_search"}]}, "tools[0].type"),
    ({"tools": [{"type": "function"}]}, "tools[0].name"),
    ({"tools": [{**WEATHER, "parameters": "x"}]}, "tools[0].parameters"),
    ({"tool_choice": "sometimes"}, "tool_choice"),
    ({"tool_choice": {"type": "function"}}, "tool_choice.name"),
    ({"text": "json"}, "text"),
    ({"text": {"format": {"type": "yaml"}}}, "text.format.type"),
    ({"text": {"format": {"type": "json_schema", "name": "x"}}}, "text.format.schema"),
    ({"text": {"format": {"type": "json_schema", "schema": {}}}}, "text.format.name"),
    ({"max_output_tokens": 0}, "max_output_tokens"),
    ({"max_output_tokens": True}, "max_output_tokens"),
    ({"temperature": "hot"}, "temperature"),
    ({"stream": "yes"}, "stream"),
    ({"store": 1}, "store"),
    ({"previous_response_id": 5}, "previous_response_id"),
    ({"metadata": {"k": 1}}, "metadata"),
    ({"metadata": {str(i): "v" for i in range(17)}}, "metadata"),
    ({"background": True}, "background"),
]  # fmt: skip


@pytest.mark.parametrize(("change", "param"), MALFORMED)
def test_a_malformed_request_names_its_field(change: dict[str, Any], param: str) -> None:
    with pytest.raises(APIError) as caught:
        protocol.chat_body(_turn(**change), [])
    assert caught.value.status == 400 and caught.value.param == param, caught.value.message


def _completion(message: dict[str, Any], finish: str) -> dict[str, Any]:
    usage = {"prompt_tokens": 5, "completion_tokens": 2, "total_tokens": 7}
    return {"choices": [{"message": message, "finish_reason": finish}], "usage": usage}


def test_a_chat_answer_becomes_a_response() -> None:
    turn = _turn(metadata={"a": "b"})
    text = protocol.answered(turn, _completion({"content": "ok"}, "stop"))
    assert text["status"] == "completed" and text["metadata"] == {"a": "b"}
    assert text["output"][0]["content"][0]["text"] == "ok"
    assert text["usage"]["input_tokens"] == 5 and text["usage"]["total_tokens"] == 7
    cut = protocol.answered(turn, _completion({"content": "o"}, "length"))
    assert cut["status"] == "incomplete"
    assert cut["incomplete_details"] == {"reason": "max_output_tokens"}
    call = {"id": "call_1", "function": {"name": "f", "arguments": '{"x": 1}'}}
    called = protocol.answered(
        turn, _completion({"content": None, "tool_calls": [call]}, "tool_calls")
    )
    (item,) = called["output"]
    assert item["type"] == "function_call" and item["call_id"] == "call_1"
    assert item["name"] == "f" and item["arguments"] == '{"x": 1}'


def _sse(chunks: list[dict[str, Any]]) -> bytes:
    return (
        b"".join(b"data: " + json.dumps(c).encode() + b"\n\n" for c in chunks) + b"data: [DONE]\n\n"
    )


def _events(stream: protocol.ResponseStream, raw: bytes, cut: int) -> list[dict[str, Any]]:
    """The stream's events for ``raw`` arriving in pieces of ``cut`` bytes."""
    reader = sse.EventReader()
    out = stream.opening()
    for start in range(0, len(raw), cut):
        for chunk in sse.chunks(reader, raw[start : start + cut]):
            out += stream.feed(chunk)
    if not stream.broken:
        out += stream.closing()
    events = []
    for block in out.decode().strip().split("\n\n"):
        name, data = block.split("\n")
        event = json.loads(data.removeprefix("data: "))
        assert name == f"event: {event['type']}"
        events.append(event)
    return events


@pytest.mark.parametrize("cut", [1, 7, 10_000])
def test_a_chat_stream_becomes_the_documented_events(cut: int) -> None:
    deltas = [{"choices": [{"index": 0, "delta": {"content": piece}}]} for piece in ("Hel", "lo")]
    finish = {"choices": [{"index": 0, "delta": {}, "finish_reason": "stop"}]}
    usage = {"choices": [], "usage": {"prompt_tokens": 3, "completion_tokens": 2}}
    events = _events(protocol.ResponseStream(_turn()), _sse([*deltas, finish, usage]), cut)
    assert [e["type"] for e in events] == [
        "response.created", "response.in_progress", "response.output_item.added",
        "response.content_part.added", "response.output_text.delta", "response.output_text.delta",
        "response.output_text.done", "response.content_part.done", "response.output_item.done",
        "response.completed",
    ]  # fmt: skip
    assert [e["sequence_number"] for e in events] == list(range(len(events)))
    final = events[-1]["response"]
    assert final["output"][0]["content"][0]["text"] == "Hello" == events[6]["text"]
    assert final["usage"]["output_tokens"] == 2


def test_a_streamed_call_and_a_broken_stream() -> None:
    opening = {"index": 0, "id": "call_9", "function": {"name": "f", "arguments": ""}}
    more = {"index": 0, "function": {"arguments": '{"a"'}}
    rest = {"index": 0, "function": {"arguments": ": 1}"}}
    chunks = [
        {"choices": [{"index": 0, "delta": {"tool_calls": [c]}}]} for c in (opening, more, rest)
    ]
    events = _events(protocol.ResponseStream(_turn()), _sse(chunks), 5)
    kinds = [e["type"] for e in events]
    assert kinds.count("response.function_call_arguments.delta") == 2
    done = next(e for e in events if e["type"] == "response.function_call_arguments.done")
    assert done["arguments"] == '{"a": 1}' and done["name"] == "f"
    assert events[-1]["response"]["output"][0]["call_id"] == "call_9"
    error = {"error": {"message": "engine died", "code": "engine_failed"}}
    broken = protocol.ResponseStream(_turn())
    events = _events(
        broken, _sse([{"choices": [{"index": 0, "delta": {"content": "x"}}]}, error]), 9
    )
    assert [e["type"] for e in events][-2:] == ["error", "response.failed"]
    assert events[-1]["response"]["error"]["code"] == "engine_failed"


def test_the_store_keeps_within_its_limits(tmp_path: Path) -> None:
    path = tmp_path / "responses.db"
    store = ResponseStore(path, max_count=2)
    assert store.get("resp_a") is None and not store.delete("resp_a")
    assert not path.exists()  # looking up writes nothing
    for name in ("a", "b", "c"):
        store.put({"id": f"resp_{name}"}, [{"role": "user", "content": name}])
    assert store.get("resp_a") is None  # the oldest, over the count
    assert store.get("resp_c") == ({"id": "resp_c"}, [{"role": "user", "content": "c"}])
    assert store.delete("resp_c") and store.get("resp_c") is None
    assert path.stat().st_mode & 0o777 == 0o600
    aged = ResponseStore(path, max_age=0.05)
    aged.put({"id": "resp_d"}, [])
    time.sleep(0.1)
    assert aged.get("resp_d") is None and aged.get("resp_b") is None


def test_a_stored_conversation_is_listed_a_page_at_a_time() -> None:
    """What the model was given (earlier turns, this input; not this output), each item
    with an id, newest first by default; ``after`` goes on where a page ended."""
    turn = _turn(input=[{"role": "user", "content": "one"}, {"role": "assistant", "content": "x"}])
    first = protocol.answered(turn, {"choices": [{"message": {"content": "two"}}]})
    kept = protocol.conversation([], turn, first)
    second_turn = _turn(input="three")
    second = protocol.answered(second_turn, {"choices": [{"message": {"content": "four"}}]})
    kept = protocol.conversation(kept, second_turn, second)
    assert [item["type"] for item in kept] == ["message"] * 5
    assert kept[1]["content"] == [{"type": "output_text", "text": "x"}]
    assert protocol.messages(kept, None)[0] == {"role": "user", "content": "one"}
    page = protocol.input_items(second, kept, {})
    texts = [item["content"][0]["text"] for item in page["data"]]
    assert texts == ["three", "two", "x", "one"] and not page["has_more"]
    assert all(item["id"] and item["status"] == "completed" for item in page["data"])
    assert page["first_id"] == kept[3]["id"] and page["last_id"] == kept[0]["id"]
    asc = protocol.input_items(second, kept, {"order": "asc", "limit": "2"})
    assert [i["id"] for i in asc["data"]] == [kept[0]["id"], kept[1]["id"]] and asc["has_more"]
    rest = protocol.input_items(second, kept, {"order": "asc", "after": asc["last_id"]})
    assert [i["id"] for i in rest["data"]] == [kept[2]["id"], kept[3]["id"]]
    assert not rest["has_more"]
    end = protocol.input_items(second, kept, {"after": kept[0]["id"]})
    assert end["data"] == [] and end["first_id"] is None and not end["has_more"]


@pytest.mark.parametrize(
    ("query", "param"),
    [
        ({"limit": "0"}, "limit"),
        ({"limit": "101"}, "limit"),
        ({"limit": str(10**9)}, "limit"),
        ({"limit": "9" * 5000}, "limit"),
        ({"limit": "abc"}, "limit"),
        ({"limit": "-1"}, "limit"),
        ({"limit": "1.5"}, "limit"),
        ({"limit": ""}, "limit"),
        ({"order": "sideways"}, "order"),
        ({"after": "msg_unknown"}, "after"),
    ],
)
def test_a_hostile_page_query_names_its_parameter(query: dict[str, str], param: str) -> None:
    turn = _turn()
    answer = protocol.answered(turn, {"choices": [{"message": {"content": "ok"}}]})
    with pytest.raises(APIError) as error:
        protocol.input_items(answer, protocol.conversation([], turn, answer), query)
    assert error.value.status == 400 and error.value.param == param


def test_input_items_over_http_checks_the_key_and_the_id(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("FAMOUS_HOME", str(tmp_path))
    turn = _turn()
    answer = protocol.answered(turn, {"choices": [{"message": {"content": "ok"}}]})
    ResponseStore(tmp_path / "responses.db").put(answer, protocol.conversation([], turn, answer))
    key = {"authorization": "Bearer sk-items"}
    path = f"/v1/responses/{answer['id']}/input_items"
    sent = [
        ("GET", path, b"", {}),
        ("GET", path, b"", {"authorization": "Bearer wrong"}),
        ("GET", path, b"", key),
        ("GET", path + "?limit=0", b"", key),
        ("GET", path + "?limit=abc&order=asc", b"", key),
        ("GET", path + "?after=msg_nope", b"", key),
        ("GET", "/v1/responses/resp_nope/input_items", b"", key),
        ("GET", path + "?limit=1&order=asc&include[]=message.input_image.image_url", b"", key),
    ]
    answers = _in_process(sent, api_key="sk-items")
    statuses = [r.status_code for r in answers]
    assert statuses == [401, 401, 200, 400, 400, 400, 404, 200], [r.text for r in answers]
    listed = answers[2].json()
    assert listed["object"] == "list" and listed["has_more"] is False
    (item,) = listed["data"]
    assert item["role"] == "user" and item["content"] == [{"type": "input_text", "text": "hi"}]
    assert listed["first_id"] == listed["last_id"] == item["id"]
    params = [r.json()["error"]["param"] for r in answers[3:6]]
    assert params == ["limit", "limit", "after"]
    assert answers[6].json()["error"]["code"] == "not_found"
    assert answers[7].json()["data"] == [item]


def _in_process(
    sent: list[tuple[str, str, bytes, dict[str, str]]], api_key: str | None = None
) -> list[httpx.Response]:
    app = create_app(Scheduler(ModelRegistry([], use_store=False), record=False), api_key=api_key)

    async def go() -> list[httpx.Response]:
        transport = httpx.ASGITransport(app=app, raise_app_exceptions=False)
        async with httpx.AsyncClient(transport=transport, base_url="http://127.0.0.1") as http:
            return [await http.request(m, p, content=b, headers=h) for m, p, b, h in sent]

    return asyncio.run(go())


def test_a_hostile_client_gets_4xx_naming_the_field(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("FAMOUS_HOME", str(tmp_path))
    kind = {"content-type": "application/json"}
    valid = {"model": "tiny", "input": "hi"}
    empty_enum = {"format": {"type": "json_schema", "name": "n", "schema": {"enum": []}}}

    def post(change: dict[str, Any], headers: dict[str, str] = kind) -> tuple:
        return ("POST", "/v1/responses", json.dumps({**valid, **change}).encode(), headers)

    sent = [
        post({"input": [{"role": "x"}]}),
        post({"previous_response_id": "resp_no"}),
        ("POST", "/v1/responses", b"[" * 10_000, kind),
        post({}, {"content-type": "text/plain"}),
        post({"text": empty_enum}),
        post({}),
        ("GET", "/v1/responses/resp_no", b"", {}),
        ("DELETE", "/v1/responses/resp_no", b"", {}),
    ]
    answers = _in_process(sent)
    statuses = [r.status_code for r in answers]
    assert statuses == [400, 404, 400, 415, 400, 404, 404, 404], [r.text for r in answers]
    params = [r.json()["error"]["param"] for r in answers]
    assert params[:2] == ["input[0].role", "previous_response_id"]
    # the chat route's check, named as the client sent it
    assert params[4] == "text.format.schema", answers[4].text
    assert answers[5].json()["error"]["param"] == "model"
    assert not (tmp_path / "responses.db").exists()


def test_openapi_publishes_the_body() -> None:
    (answer,) = _in_process([("GET", "/openapi.json", b"", {})])
    schema = answer.json()
    body = schema["paths"]["/v1/responses"]["post"]["requestBody"]["content"]["application/json"]
    assert body["schema"]["$ref"].endswith("/ResponsesRequest")
    fields = schema["components"]["schemas"]["ResponsesRequest"]["properties"]
    assert {"input", "instructions", "text", "previous_response_id"} <= set(fields)
    assert {"get", "delete"} <= set(schema["paths"]["/v1/responses/{response_id}"])


def test_the_sdk_on_the_tiny_model(gateway: Gateway) -> None:
    """Through a real gateway and engine: a stored answer, the stream's events in order and
    its usage equal to the answer's, a follow-up that reads the history, delete."""
    client = openai.OpenAI(base_url=gateway.v1, api_key="unused", max_retries=0)
    ask = {"model": "tiny", "input": "hello", "max_output_tokens": 6, "temperature": 0}
    whole = client.responses.create(**ask)
    assert whole.status in ("completed", "incomplete") and whole.output[0].type == "message"
    events = list(client.responses.create(**ask, stream=True))
    kinds = [e.type for e in events]
    assert kinds[:3] == ["response.created", "response.in_progress", "response.output_item.added"]
    assert kinds[-1] == f"response.{whole.status}"
    final = events[-1].response
    deltas = "".join(e.delta for e in events if e.type == "response.output_text.delta")
    assert deltas == final.output_text == whole.output_text
    assert final.usage.input_tokens == whole.usage.input_tokens
    assert final.usage.output_tokens == whole.usage.output_tokens
    follow = client.responses.create(**ask, previous_response_id=final.id)
    assert follow.usage.input_tokens > whole.usage.input_tokens + whole.usage.output_tokens
    assert client.responses.retrieve(follow.id).previous_response_id == final.id
    client.responses.delete(final.id)
    with pytest.raises(openai.NotFoundError):
        client.responses.create(**ask, previous_response_id=final.id)


def test_a_client_that_leaves_mid_stream_frees_the_engine(gateway: Gateway) -> None:
    """The chat stream under a Responses stream is closed with it: the deployment is
    released and the next request is answered."""
    body = {"model": "tiny", "input": "hello", "max_output_tokens": 200, "stream": True}
    with httpx.Client(base_url=gateway.v1, timeout=60) as http:
        with http.stream("POST", "/responses", json=body) as stream:
            assert stream.headers["content-type"].startswith("text/event-stream")
            first = next(stream.iter_lines())
            assert first == "event: response.created"
        again = http.post("/responses", json={**body, "stream": False, "max_output_tokens": 4})
    assert again.status_code == 200 and again.json()["object"] == "response"
