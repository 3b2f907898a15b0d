"""The native engine in its own process, driven by the official openai client."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

SRC = str(Path(__file__).resolve().parents[2] / "src")


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="module")
def server(tiny_chat_model: Path) -> Iterator[str]:
    port = _free_port()
    proc = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "famous.runtimes.workers.native",
            "--model",
            str(tiny_chat_model),
            "--port",
            str(port),
            "--max-seq-len",
            "256",
            "--served-model-name",
            "tiny",
            "--threads",
            "1",
        ],
        env={**os.environ, "PYTHONPATH": SRC},
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
    )
    base = f"http://127.0.0.1:{port}"
    try:
        deadline = time.time() + 120
        while True:
            if proc.poll() is not None:
                raise RuntimeError(proc.stderr.read().decode())
            try:
                if httpx.get(f"{base}/health", timeout=1).status_code == 200:
                    break
            except httpx.HTTPError:
                pass
            if time.time() > deadline:
                raise TimeoutError("server did not become healthy")
            time.sleep(0.3)
        yield base
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=20)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


@pytest.fixture(scope="module")
def client(server: str):
    from openai import OpenAI

    return OpenAI(base_url=f"{server}/v1", api_key="unused")


def test_health_and_models(server: str, client) -> None:
    assert httpx.get(f"{server}/health").json() == {"status": "ok", "model": "tiny"}
    assert [m.id for m in client.models.list().data] == ["tiny"]


def test_chat_non_stream_and_stream_agree(client) -> None:
    msgs = [{"role": "user", "content": "Hello"}]
    r = client.chat.completions.create(model="tiny", messages=msgs, max_tokens=8, temperature=0)
    assert r.object == "chat.completion" and r.choices[0].message.role == "assistant"
    assert r.choices[0].finish_reason in ("stop", "length")
    assert r.usage.total_tokens == r.usage.prompt_tokens + r.usage.completion_tokens
    text = r.choices[0].message.content
    stream = client.chat.completions.create(
        model="tiny",
        messages=msgs,
        max_tokens=8,
        temperature=0,
        stream=True,
        stream_options={"include_usage": True},
    )
    parts, finish, usage = [], None, None
    for chunk in stream:
        if chunk.usage:
            usage = chunk.usage
        for c in chunk.choices:
            parts.append(c.delta.content or "")
            finish = c.finish_reason or finish
    assert "".join(parts) == text and finish == r.choices[0].finish_reason
    assert usage.completion_tokens == r.usage.completion_tokens


def test_seed_and_stop(client) -> None:
    kw = dict(model="tiny", prompt="Once upon a time", max_tokens=12, temperature=0.9, seed=5)
    a = client.completions.create(**kw)
    b = client.completions.create(**kw)
    assert a.choices[0].text == b.choices[0].text and a.object == "text_completion"
    full = client.completions.create(model="tiny", prompt="The quick", max_tokens=12, temperature=0)
    text = full.choices[0].text
    if len(text) >= 4:
        cut = client.completions.create(
            model="tiny", prompt="The quick", max_tokens=12, temperature=0, stop=[text[2:4]]
        )
        assert cut.choices[0].text == text[: text.index(text[2:4])]
        assert cut.choices[0].finish_reason == "stop"
    streamed = "".join(
        c.choices[0].text
        for c in client.completions.create(
            model="tiny", prompt="The quick", max_tokens=12, temperature=0, stream=True
        )
    )
    assert streamed == text


def test_errors_use_openai_shape(server: str, client) -> None:
    import openai

    with pytest.raises(openai.BadRequestError) as e:
        client.chat.completions.create(model="tiny", messages=[{"role": "robot", "content": "x"}])
    assert "unknown role" in e.value.message
    r = httpx.post(
        f"{server}/v1/chat/completions", json={"model": "tiny", "messages": [], "temperature": 7}
    )
    assert r.status_code == 400
    err = r.json()["error"]
    assert (
        set(err) == {"message", "type", "param", "code"} and err["type"] == "invalid_request_error"
    )
    r = httpx.post(f"{server}/v1/completions", json={"prompt": "hi " * 400, "max_tokens": 2})
    assert r.status_code == 400 and r.json()["error"]["code"] == "context_length_exceeded"
