"""The gateway with real llama.cpp engines, driven by the official ``openai`` client."""

from __future__ import annotations

import concurrent.futures
import json
import os
import shutil
import signal
import subprocess
import sys
import time

import httpx
import openai
import pytest
from serving_harness import Gateway, famous_cli, famous_env, get_json

pytestmark = pytest.mark.slow

CHAT = [{"role": "user", "content": "tell me a story about silicon"}]


@pytest.fixture(scope="module")
def client(gateway: Gateway) -> openai.OpenAI:
    return openai.OpenAI(base_url=gateway.v1, api_key="unused", max_retries=0, timeout=60)


def stream_text(stream) -> tuple[str, str | None, int]:
    """(text, finish_reason, content chunks) of a streamed chat or completion."""
    parts, finish, chunks = [], None, 0
    for event in stream:
        for choice in event.choices:
            piece = choice.delta.content if hasattr(choice, "delta") else choice.text
            if piece:
                parts.append(piece)
                chunks += 1
            finish = choice.finish_reason or finish
    return "".join(parts), finish, chunks


def test_models_list(client: openai.OpenAI) -> None:
    ids = {m.id for m in client.models.list()}
    assert {"tiny", "emb"} <= ids


def test_chat_stream_equals_non_stream(client: openai.OpenAI) -> None:
    whole = client.chat.completions.create(
        model="tiny", messages=CHAT, max_tokens=24, temperature=0
    )
    choice = whole.choices[0]
    assert whole.model == "tiny"
    assert choice.finish_reason == "length"
    assert whole.usage.completion_tokens == 24  # max_tokens is honoured exactly
    assert choice.message.content
    streamed, finish, chunks = stream_text(
        client.chat.completions.create(
            model="tiny", messages=CHAT, max_tokens=24, temperature=0, stream=True
        )
    )
    assert streamed == choice.message.content
    assert finish == "length"
    assert chunks >= 2


def test_completions_and_max_tokens(client: openai.OpenAI) -> None:
    whole = client.completions.create(
        model="tiny", prompt="the quick brown fox", max_tokens=16, temperature=0
    )
    assert whole.usage.completion_tokens == 16
    assert whole.choices[0].finish_reason == "length"
    streamed, finish, _ = stream_text(
        client.completions.create(
            model="tiny", prompt="the quick brown fox", max_tokens=16, temperature=0, stream=True
        )
    )
    assert streamed == whole.choices[0].text
    assert finish == "length"
    short = client.completions.create(
        model="tiny", prompt="the quick brown fox", max_tokens=4, temperature=0
    )
    assert short.usage.completion_tokens == 4


def test_max_completion_tokens_is_honoured_by_every_server(client: openai.OpenAI) -> None:
    """What langchain-openai and new SDK code send instead of max_tokens; llama_cpp.server
    alone would ignore it and generate until the context is full."""
    for stream in (False, True):
        answer = client.chat.completions.create(
            model="tiny", messages=CHAT, max_completion_tokens=5, temperature=0, stream=stream
        )
        if stream:
            pieces = [e.choices[0].delta.content for e in answer if e.choices]
            assert 1 <= len([p for p in pieces if p]) <= 5
        else:
            assert answer.usage.completion_tokens == 5
            assert answer.choices[0].finish_reason == "length"


def test_several_choices_or_a_400_naming_the_engine(gateway: Gateway, client: openai.OpenAI):
    """n=2: llama-server answers two choices; llama_cpp.server would silently answer one,
    so the gateway refuses it, naming the engine and the field."""
    if gateway.server == "llama-server":
        answer = client.chat.completions.create(model="tiny", messages=CHAT, max_tokens=3, n=2)
        assert len(answer.choices) == 2
        return
    with pytest.raises(openai.BadRequestError) as info:
        client.chat.completions.create(model="tiny", messages=CHAT, max_tokens=3, n=2)
    error = info.value.body
    assert error["param"] == "n" and "llama_cpp.server" in error["message"]
    assert client.chat.completions.create(model="tiny", messages=CHAT, max_tokens=3, n=1)


def test_stop_sequences(client: openai.OpenAI) -> None:
    full = (
        client.chat.completions.create(model="tiny", messages=CHAT, max_tokens=40, temperature=0)
        .choices[0]
        .message.content
    )
    stop = full[12:15]
    assert len(stop) == 3
    cut = client.chat.completions.create(
        model="tiny", messages=CHAT, max_tokens=40, temperature=0, stop=[stop]
    ).choices[0]
    assert cut.finish_reason == "stop"
    assert cut.message.content == full[: full.index(stop)]
    streamed, finish, _ = stream_text(
        client.chat.completions.create(
            model="tiny", messages=CHAT, max_tokens=40, temperature=0, stop=stop, stream=True
        )
    )
    assert streamed == cut.message.content
    assert finish == "stop"


def test_embeddings(client: openai.OpenAI) -> None:
    result = client.embeddings.create(model="emb", input=["hello world", "the quick brown fox"])
    assert [d.index for d in result.data] == [0, 1]
    first, second = (d.embedding for d in result.data)
    assert len(first) == len(second) == 64
    assert first != second
    again = client.embeddings.create(model="emb", input="hello world").data[0].embedding
    assert again == pytest.approx(first, abs=1e-4)


def test_the_wrong_route_for_a_model_gets_a_400_naming_its_engine(client: openai.OpenAI):
    """Embeddings from a chat model (llama.cpp answers 500 or 501), chat from an embedding
    model: a 400 an SDK will not retry, saying what the engine serves."""
    with pytest.raises(openai.BadRequestError) as info:
        client.embeddings.create(model="tiny", input="hello")
    assert info.value.body["param"] == "model"
    assert "text-generation model" in info.value.body["message"]
    with pytest.raises(openai.BadRequestError) as info:
        client.chat.completions.create(model="emb", messages=CHAT, max_tokens=2)
    assert "embedding model" in info.value.body["message"]


def test_sixteen_concurrent_streams(client: openai.OpenAI) -> None:
    def one(i: int) -> tuple[str, str | None]:
        text, finish, _ = stream_text(
            client.chat.completions.create(
                model="tiny",
                messages=[{"role": "user", "content": f"client {i} says hello"}],
                max_tokens=12,
                temperature=0,
                stream=True,
            )
        )
        return text, finish

    with concurrent.futures.ThreadPoolExecutor(max_workers=16) as pool:
        results = list(pool.map(one, range(16)))
    assert len(results) == 16
    for text, finish in results:
        assert text
        assert finish == "length"


def _error(resp: httpx.Response) -> dict:
    body = resp.json()
    assert set(body) == {"error"}, body
    assert "Traceback" not in resp.text
    return body["error"]


def test_bad_input_gets_clear_4xx(gateway: Gateway, client: openai.OpenAI) -> None:
    url = gateway.v1 + "/chat/completions"
    with httpx.Client(timeout=60, trust_env=False) as http:
        resp = http.post(
            url,
            content=b'{"model": "tiny", "messages": [',
            headers={"content-type": "application/json"},
        )
        assert resp.status_code == 400
        assert _error(resp)["code"] == "invalid_json"

        resp = http.post(url, json=["not", "an", "object"])
        assert resp.status_code == 400

        resp = http.post(url, json={"model": "tiny", "messages": CHAT, "max_tokens": -5})
        assert resp.status_code == 400
        err = _error(resp)
        assert err["param"] == "max_tokens"
        assert "max_tokens" in err["message"]

        resp = http.post(url, json={"model": "tiny", "messages": CHAT, "temperature": "hot"})
        assert resp.status_code == 400
        assert _error(resp)["param"] == "temperature"

        resp = http.post(url, json={"model": "nope", "messages": CHAT})
        assert resp.status_code == 404
        err = _error(resp)
        assert err["code"] == "model_not_found"
        assert "tiny" in err["message"] and "emb" in err["message"]

        huge = "word " * (2 * 1024 * 1024)  # 10 MiB of prompt
        resp = http.post(
            url, json={"model": "tiny", "messages": [{"role": "user", "content": huge}]}
        )
        assert resp.status_code == 413
        assert _error(resp)["code"] == "request_too_large"

        resp = http.get(gateway.url + "/v1/nothing-here")
        assert resp.status_code == 404
        _error(resp)

    with pytest.raises(openai.NotFoundError) as info:
        client.chat.completions.create(model="missing", messages=CHAT)
    assert "available models" in str(info.value)
    with pytest.raises(openai.BadRequestError):
        client.chat.completions.create(model="tiny", messages=CHAT, max_tokens=-1)
    # The gateway is still up and still serving.
    assert get_json(gateway.url + "/health")["status"] == "ok"
    assert client.chat.completions.create(model="tiny", messages=CHAT, max_tokens=2).choices


def test_request_while_loading_gets_503(gateway: Gateway, tiny_models, tmp_path) -> None:
    cold = tmp_path / "cold.gguf"
    shutil.copy(tiny_models["llama"], cold)
    with httpx.Client(timeout=120, trust_env=False) as http:
        register = {"name": "cold", "path": str(cold)}
        resp = http.post(gateway.url + "/famous/api/models", json=register, headers=gateway.admin)
        assert resp.status_code == 200, resp.text
        body = {"model": "cold", "messages": CHAT, "max_tokens": 2}
        url = gateway.v1 + "/chat/completions"
        resp = http.post(url, json=body, headers={"Prefer": "wait=0"})
        assert resp.status_code == 503
        assert int(resp.headers["retry-after"]) >= 1
        assert _error(resp)["code"] == "model_loading"
        resp = http.post(url, json=body, headers={"Prefer": "wait=0"})  # still loading
        assert resp.status_code in (200, 503)
        resp = http.post(url, json=body)  # waits for the load
        assert resp.status_code == 200, resp.text
        http.post(gateway.url + "/famous/api/stop", json={"model": "cold"}, headers=gateway.admin)


def test_engine_killed_mid_stream(gateway: Gateway, client: openai.OpenAI) -> None:
    client.chat.completions.create(model="tiny", messages=CHAT, max_tokens=1)
    pid = gateway.pid_of("tiny")
    stream = client.chat.completions.create(
        model="tiny", messages=CHAT, max_tokens=4000, temperature=0, stream=True
    )
    received = 0
    with pytest.raises(openai.APIError) as info:
        for event in stream:
            if event.choices and event.choices[0].delta.content:
                received += 1
                if received == 1:  # ~4000 tokens are still to come (seconds of work)
                    os.kill(pid, signal.SIGKILL)
    assert received >= 1
    assert "exited" in str(info.value) or "broke" in str(info.value)

    # famous status asks the processes: failed, with the engine's last log lines.
    deadline = time.monotonic() + 10
    while True:
        result = famous_cli(gateway.home, "status", "--format", "json")
        assert result.returncode == 0, result.stderr
        status = json.loads(result.stdout)
        tiny = next(d for d in status["deployments"] if d["name"] == "tiny")
        if tiny["status"] == "failed" or time.monotonic() > deadline:
            break
        time.sleep(0.2)
    assert tiny["status"] == "failed"
    assert tiny["last_log_lines"]
    table = famous_cli(gateway.home, "status")
    assert "failed" in table.stdout and "last lines" in table.stdout

    # The next request starts the engine again.
    again = client.chat.completions.create(model="tiny", messages=CHAT, max_tokens=3)
    assert again.choices[0].message.content
    assert gateway.pid_of("tiny") != pid
    assert get_json(gateway.url + "/health")["models"]["tiny"] == "ready"


def test_ps_and_logs_cli(gateway: Gateway, client: openai.OpenAI) -> None:
    client.chat.completions.create(model="tiny", messages=CHAT, max_tokens=1)
    result = famous_cli(gateway.home, "ps", "--format", "json")
    assert result.returncode == 0, result.stderr
    rows = {r["name"]: r for r in json.loads(result.stdout)}
    assert rows["tiny"]["server"] == gateway.server
    assert rows["tiny"]["runtime"] == "llamacpp"
    assert rows["tiny"]["memory_bytes"] > 0
    table = famous_cli(gateway.home, "ps").stdout
    assert gateway.server in table and "UPTIME" in table
    metrics = httpx.get(gateway.url + "/metrics", timeout=10, trust_env=False).text
    assert 'famous_model_loaded{model="tiny"} 1' in metrics
    assert 'famous_requests_total{model="tiny"}' in metrics
    logs = famous_cli(gateway.home, "logs", "tiny", "-n", "5")
    assert logs.returncode == 0
    assert logs.stdout.strip()


def test_chat_cli_commands_and_multiline(gateway: Gateway) -> None:
    typed = 'hello\n/clear\n"""first line\nsecond line"""\n/help\n/bye\n'
    result = subprocess.run(
        [sys.executable, "-m", "famous", "chat", "tiny", "--url", gateway.url, "--max-tokens", "4"],
        input=typed,
        env=famous_env(gateway.home),
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 0, result.stderr
    answers = [line for line in result.stdout.replace(">>> ", "\n").splitlines() if line.strip()]
    assert len(answers) == 2  # one per message; /clear, /help and /bye are commands
    assert "(conversation cleared)" in result.stderr
    assert "/bye" in result.stderr  # the help text
