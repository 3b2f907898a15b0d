"""Ollama's API through a real gateway and llama-server, with the official ``ollama``
client: listing, show, ps, chat and generate (streamed and whole), tools, embeddings, pull
from a Hub-protocol server, copy and delete; and what a hostile client sends."""

from __future__ import annotations

import base64
import json
from collections.abc import Iterator
from pathlib import Path

import httpx
import ollama
import pytest
from serving_harness import Gateway, local_hub, serving_from_hub

pytestmark = [pytest.mark.slow, pytest.mark.timeout(300)]

CHAT = [{"role": "user", "content": "hello there"}]
GREEDY = {"temperature": 0, "seed": 0, "num_predict": 12}
PNG = base64.b64encode(b"\x89PNG\r\n\x1a\n" + b"\0" * 32).decode()


@pytest.fixture(scope="module")
def hub(tiny_models: dict[str, Path]) -> Iterator[object]:
    with local_hub({"org/Tiny-Chat-GGUF": {"tiny-chat-q8_0.gguf": tiny_models["llama"]}}) as hub:
        yield hub


@pytest.fixture(scope="module")
def gateway(
    tmp_path_factory: pytest.TempPathFactory, tiny_models: dict[str, Path], hub: object
) -> Iterator[Gateway]:
    home = tmp_path_factory.mktemp("famous-home")
    models = {"tiny": tiny_models["llama"], "emb": tiny_models["bert"]}
    with serving_from_hub(home, models, hub) as gw:
        yield gw


@pytest.fixture(scope="module")
def client(gateway: Gateway) -> ollama.Client:
    return ollama.Client(host=gateway.url, timeout=120)


@pytest.fixture(scope="module")
def admin(gateway: Gateway) -> ollama.Client:
    return ollama.Client(host=gateway.url, timeout=120, headers=gateway.admin)


def test_list_show_and_version(client: ollama.Client) -> None:
    names = {m.model for m in client.list().models}
    assert {"tiny:latest", "emb:latest"} <= names
    tiny = next(m for m in client.list().models if m.model == "tiny:latest")
    assert tiny.size and tiny.digest and tiny.details.format == "gguf"
    shown = client.show("tiny:latest")
    assert "completion" in shown.capabilities and "tools" in shown.capabilities
    assert shown.modelinfo["general.architecture"] == "llama"
    assert client.show("emb").capabilities == ["embedding"]
    assert httpx.get(str(client._client.base_url) + "/api/version").json()["version"]


def test_chat_stream_pieces_make_the_whole_answer(client: ollama.Client, gateway: Gateway) -> None:
    whole = client.chat(model="tiny:latest", messages=CHAT, options=GREEDY, stream=False)
    pieces = list(client.chat(model="tiny", messages=CHAT, options=GREEDY, stream=True))
    assert [p.done for p in pieces].count(True) == 1 and pieces[-1].done
    assert "".join(p.message.content or "" for p in pieces) == whole.message.content
    assert whole.done_reason in ("stop", "length") and whole.eval_count == pieces[-1].eval_count
    assert whole.total_duration and whole.total_duration > 0
    openai = httpx.post(
        gateway.v1 + "/chat/completions",
        json={"model": "tiny", "messages": CHAT, "max_tokens": 12, "temperature": 0, "seed": 0},
        timeout=60,
    ).json()
    assert openai["choices"][0]["message"]["content"] == whole.message.content
    assert openai["usage"]["prompt_tokens"] == whole.prompt_eval_count
    assert openai["usage"]["completion_tokens"] == whole.eval_count


def test_generate_and_ps(client: ollama.Client) -> None:
    answer = client.generate(model="tiny", prompt="once upon", options=GREEDY)
    assert answer.done and isinstance(answer.response, str) and answer.eval_count
    streamed = list(client.generate(model="tiny", prompt="once upon", options=GREEDY, stream=True))
    assert "".join(p.response for p in streamed) == answer.response
    loaded = {m.model: m for m in client.ps().models}
    assert "tiny:latest" in loaded and loaded["tiny:latest"].size_vram == 0
    assert loaded["tiny:latest"].expires_at is not None


def test_keep_alive_zero_unloads(client: ollama.Client) -> None:
    assert client.generate(model="emb", prompt="", keep_alive=0).done_reason == "unload"
    assert "emb:latest" not in {m.model for m in client.ps().models}


def test_tools_answer_a_call_or_text(client: ollama.Client) -> None:
    tool = {
        "type": "function",
        "function": {
            "name": "get_weather",
            "description": "the weather in a city",
            "parameters": {
                "type": "object",
                "properties": {"city": {"type": "string"}},
                "required": ["city"],
            },
        },
    }
    try:
        reply = client.chat(model="tiny", messages=CHAT, tools=[tool], options={"num_predict": 64})
    except ollama.ResponseError as exc:  # a random model's JSON may not end in 64 tokens
        assert exc.status_code == 400 and "max_tokens" in str(exc.error)
        return
    assert reply.done
    for call in reply.message.tool_calls or []:
        assert call.function.name == "get_weather"
        assert isinstance(call.function.arguments, dict)


def test_embed(client: ollama.Client) -> None:
    one = client.embed(model="emb", input="hello")
    assert len(one.embeddings) == 1 and len(one.embeddings[0]) > 1
    two = client.embed(model="emb:latest", input=["hello", "world"])
    assert len(two.embeddings) == 2 and two.prompt_eval_count
    legacy = client.embeddings(model="emb", prompt="hello")
    assert list(legacy.embedding) == pytest.approx(one.embeddings[0], rel=1e-4)


def test_pull_copy_delete(client: ollama.Client, admin: ollama.Client) -> None:
    with pytest.raises(ollama.ResponseError) as refused:
        client.pull("org/Tiny-Chat-GGUF")
    assert refused.value.status_code == 401
    progress = list(admin.pull("org/Tiny-Chat-GGUF", stream=True))
    assert progress[0].status == "pulling manifest" and progress[-1].status == "success"
    sized = [p for p in progress if p.total]
    assert sized and sized[-1].completed == sized[-1].total
    assert "org/Tiny-Chat-GGUF:latest" in {m.model for m in client.list().models}
    admin.copy("org/Tiny-Chat-GGUF", "my-tiny")
    assert client.generate(model="my-tiny", prompt="hi", options=GREEDY).done
    admin.delete("my-tiny")
    admin.delete("org/Tiny-Chat-GGUF")
    assert "org/Tiny-Chat-GGUF:latest" not in {m.model for m in client.list().models}
    with pytest.raises(ollama.ResponseError) as missing:
        admin.delete("org/Tiny-Chat-GGUF")
    assert missing.value.status_code == 404


HOSTILE = [
    ("/api/chat", {"model": "tiny", "messages": "hi"}, "messages"),
    ("/api/chat", {"model": "tiny", "messages": [{"role": 3}]}, "messages"),
    ("/api/chat", {"model": "tiny", "messages": CHAT, "options": {"num_ctx": 99}}, "num_ctx"),
    ("/api/chat", {"model": "tiny", "messages": CHAT, "options": []}, "options"),
    ("/api/chat", {"model": "tiny", "messages": CHAT, "format": 7}, "format"),
    ("/api/chat", {"model": "tiny", "messages": CHAT, "stream": "yes"}, "stream"),
    ("/api/chat", {"model": "tiny", "messages": CHAT, "keep_alive": "soon"}, "keep_alive"),
    ("/api/chat", {"model": "tiny", "messages": CHAT, "options": {"temperature": "hot"}}, "temp"),
    ("/api/chat", {"model": ["tiny"], "messages": CHAT}, "model"),
    ("/api/chat", {"model": "nope", "messages": CHAT}, "nope"),
    ("/api/chat", {"model": "tiny", "messages": [{"role": "user", "images": ["!!"]}]}, "images"),
    ("/api/chat", {"model": "tiny", "messages": [{"role": "user", "content": {}}]}, "content"),
    ("/api/chat", {"model": "tiny", "messages": CHAT, "tools": {"a": 1}}, "tools"),
    ("/api/chat", {"model": "tiny", "messages": [{"role": "user", "images": [PNG]}]}, "projector"),
    ("/api/generate", {"model": "tiny", "prompt": 5}, "prompt"),
    ("/api/generate", {"model": "tiny", "prompt": "x", "system": []}, "system"),
    ("/api/embed", {"model": "emb", "input": [1, 2]}, "input"),
    ("/api/embeddings", {"model": "emb"}, "prompt"),
    ("/api/show", {"model": None}, "model"),
    ("/api/show", {}, "model"),
]


@pytest.mark.parametrize(("path", "body", "named"), HOSTILE)
def test_hostile_bodies_get_a_4xx_naming_the_field(
    gateway: Gateway, path: str, body: dict, named: str
) -> None:
    resp = httpx.post(gateway.url + path, json=body, timeout=30)
    assert 400 <= resp.status_code < 500, resp.text
    assert named in resp.json()["error"]


@pytest.mark.parametrize(
    "raw", [b"", b"{", b"[]", b'"x"', b"\xff\xfe", b"[" * 100_000 + b"]" * 100_000]
)
def test_malformed_json_is_a_400(gateway: Gateway, raw: bytes) -> None:
    for path in ("/api/chat", "/api/generate", "/api/embed", "/api/show"):
        resp = httpx.post(
            gateway.url + path, content=raw, headers={"content-type": "application/json"}
        )
        assert resp.status_code == 400 and isinstance(resp.json()["error"], str), resp.text


def test_catalog_routes_need_a_credential(gateway: Gateway) -> None:
    for method, path, body in (
        ("POST", "/api/pull", {"model": "org/Tiny-Chat-GGUF"}),
        ("DELETE", "/api/delete", {"model": "tiny"}),
        ("POST", "/api/copy", {"source": "tiny", "destination": "t2"}),
    ):
        resp = httpx.request(method, gateway.url + path, json=body)
        assert resp.status_code == 401, resp.text
    resp = httpx.post(gateway.url + "/api/pull", json={"model": "/etc"}, headers=gateway.admin)
    assert resp.status_code == 400 and "model" in resp.json()["error"]
    resp = httpx.post(
        gateway.url + "/api/copy",
        json={"source": "tiny", "destination": "../x"},
        headers=gateway.admin,
    )
    assert resp.status_code == 400 and "destination" in resp.json()["error"]


def test_streamed_lines_are_ndjson(gateway: Gateway) -> None:
    body = {"model": "tiny", "messages": CHAT, "options": GREEDY}
    with httpx.stream("POST", gateway.url + "/api/chat", json=body, timeout=60) as resp:
        assert resp.headers["content-type"].startswith("application/x-ndjson")
        lines = [json.loads(line) for line in resp.iter_lines() if line]
    assert lines[-1]["done"] is True and all(not line["done"] for line in lines[:-1])
    assert {"done_reason", "prompt_eval_count", "eval_count", "eval_duration"} <= lines[-1].keys()
