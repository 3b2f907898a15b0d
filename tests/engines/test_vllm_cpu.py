"""vLLM's CPU build, installed by famous into an environment of its own, serving the real
SmolLM2-135M-Instruct weights through famous's gateway.

``provision.vllm_home()`` runs ``famous install-component vllm`` once per machine (3.2 GiB;
4 minutes on a quiet 2-core machine, 12 on a loaded one) into a cached FAMOUS_HOME; the
gateway here gets a home of its own whose ``components`` are that one's, so it finds the
environment the way a user's famous does. One engine start for the module (2-3 minutes on
2 loaded cores): greedy chat equal to transformers' greedy text, a stream with usage, a
json_schema answer, a forced tool call, and four concurrent streams that vLLM batches (each
stream's first token arrives before any of them finishes: one after another, the last
would start after the first ended).
"""

from __future__ import annotations

import json
import os
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import openai
import pytest
import serving_harness as harness
from engine_helpers import register, streamed

import provision

pytestmark = pytest.mark.slow

NAME = "smollm2-vllm"
SYSTEM = "You are a helpful assistant."
CHAT = [
    {"role": "system", "content": SYSTEM},
    {"role": "user", "content": "What is the capital of France? Answer in one sentence."},
]
N = 24


@pytest.fixture(scope="module")
def vllm_home() -> Path:
    return provision.vllm_home()


@pytest.fixture(scope="module")
def weights() -> Path:
    return provision.smollm2_hf_dir()


@pytest.fixture(scope="module")
def gateway(vllm_home: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[object]:
    home = tmp_path_factory.mktemp("famous-home")
    os.symlink(vllm_home / "components", home / "components")
    gw = harness.start_gateway(home, "--keep-alive", "-1")
    try:
        yield gw
    finally:
        harness.stop_gateway(gw)


@pytest.fixture(scope="module")
def client(gateway, weights: Path) -> openai.OpenAI:
    register(gateway, NAME, weights, "vllm", device="cpu", max_model_len=2048, kv_cache_space=1)
    return openai.OpenAI(base_url=gateway.v1, api_key="unused", max_retries=0, timeout=600)


def transformers_greedy(weights: Path, messages: list[dict], n: int) -> tuple[str, str]:
    """transformers' fp32 greedy answer (EOS honoured) and its finish reason."""
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    tok = AutoTokenizer.from_pretrained(weights)
    model = AutoModelForCausalLM.from_pretrained(weights, dtype=torch.float32).eval()
    ids = tok.apply_chat_template(messages, add_generation_prompt=True, return_dict=True)
    prompt = torch.tensor([ids["input_ids"]])
    with torch.inference_mode():
        out = model.generate(
            prompt, attention_mask=torch.ones_like(prompt), do_sample=False, max_new_tokens=n
        )
    new = out[0, prompt.shape[1] :].tolist()
    finish = "stop" if new and new[-1] == tok.eos_token_id else "length"
    return tok.decode(new, skip_special_tokens=True), finish


def test_famous_installed_vllm_in_its_own_environment(vllm_home: Path, gateway, client) -> None:
    record = next((vllm_home / "components" / "envs").glob("vllm-0.32.0-cpu-*/environment.json"))
    info = json.loads(record.read_text())
    assert info["component"] == "vllm" and info["backend"] == "cpu"
    assert info["size_bytes"] > 1_000_000_000 and info["seconds"] > 0
    site = next((record.parent / "lib").glob("python3*/site-packages"))
    assert (site / "vllm").is_dir()
    assert not [p for p in ("torchvision", "torchaudio", "torchcodec") if (site / p).exists()]
    said = (vllm_home / provision.INSTALL_OUTPUT).read_text()
    assert "about" in said and "min; once per machine" in said and str(record.parent) in said
    # the engine runs from that environment, and famous ps says so
    client.models.list()
    client.chat.completions.create(model=NAME, messages=CHAT, max_tokens=1, temperature=0)
    [dep] = [d for d in gateway.ps() if d["name"] == NAME]
    assert record.parent.name in dep["server_reason"], dep
    command = (gateway.home / "logs").glob("*.log")
    started = "".join(p.read_text(errors="replace") for p in command)
    assert f"{record.parent.name}/bin/python -m vllm.entrypoints.openai.api_server" in started


def test_greedy_chat_and_stream_equal_transformers(client, weights: Path) -> None:
    expected, finish = transformers_greedy(weights, CHAT, N)
    assert "Paris" in expected
    whole = client.chat.completions.create(model=NAME, messages=CHAT, max_tokens=N, temperature=0)
    assert whole.choices[0].message.content == expected
    assert whole.choices[0].finish_reason == finish
    stream = client.chat.completions.create(
        model=NAME,
        messages=CHAT,
        max_tokens=N,
        temperature=0,
        stream=True,
        stream_options={"include_usage": True},
    )
    usage = []

    def events():
        for event in stream:
            if event.usage is not None:
                usage.append(event.usage)
            yield event

    text, streamed_finish, chunks = streamed(events())
    assert (text, streamed_finish) == (expected, finish)
    assert chunks > 1
    assert usage and usage[-1].completion_tokens == whole.usage.completion_tokens


def test_json_schema_answer_follows_the_schema(client) -> None:
    """vLLM's structured output holds the answer to the schema, whatever the small model
    would have said: two or three strings in a list."""
    colors = {
        "type": "object",
        "properties": {
            "colors": {"type": "array", "items": {"type": "string"}, "minItems": 2, "maxItems": 3}
        },
        "required": ["colors"],
        "additionalProperties": False,
    }
    answer = client.chat.completions.create(
        model=NAME,
        messages=[{"role": "user", "content": "List some colors of the French flag."}],
        max_tokens=60,
        temperature=0,
        response_format={"type": "json_schema", "json_schema": {"name": "c", "schema": colors}},
    )
    data = json.loads(answer.choices[0].message.content)
    assert list(data) == ["colors"] and 2 <= len(data["colors"]) <= 3
    assert all(isinstance(c, str) for c in data["colors"])


def test_four_concurrent_streams_are_batched(client) -> None:
    prompts = [
        f"Write a long story about {thing}." for thing in ("Paris", "a river", "a cat", "snow")
    ]
    first: dict[int, float] = {}
    done: dict[int, float] = {}
    texts: dict[int, str] = {}
    errors: list[BaseException] = []

    def run(i: int) -> None:
        try:
            stream = client.chat.completions.create(
                model=NAME,
                messages=[{"role": "user", "content": prompts[i]}],
                max_tokens=48,
                temperature=0,
                stream=True,
            )
            parts = []
            for event in stream:
                for choice in event.choices:
                    if choice.delta.content:
                        first.setdefault(i, time.monotonic())
                        parts.append(choice.delta.content)
            done[i] = time.monotonic()
            texts[i] = "".join(parts)
        except BaseException as e:
            errors.append(e)

    threads = [threading.Thread(target=run, args=(i,)) for i in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=300)
    assert not errors, errors
    assert sorted(texts) == [0, 1, 2, 3] and all(texts.values())
    # batched: every stream had begun before the first of them ended
    assert max(first.values()) < min(done.values()), (first, done)


def test_forced_tool_call_comes_back_parsed(client) -> None:
    """SmolLM2's template renders no tools and this launch names no vLLM parser, so the
    gateway forces the call through vLLM's json_schema: a call of the named function whose
    arguments are JSON with the required field."""
    weather = {
        "type": "function",
        "function": {
            "name": "get_weather",
            "description": "The weather in a city.",
            "parameters": {
                "type": "object",
                "properties": {"city": {"type": "string"}},
                "required": ["city"],
            },
        },
    }
    answer = client.chat.completions.create(
        model=NAME,
        messages=[{"role": "user", "content": "What is the weather in Paris?"}],
        tools=[weather],
        tool_choice={"type": "function", "function": {"name": "get_weather"}},
        max_tokens=60,
        temperature=0,
    )
    [call] = answer.choices[0].message.tool_calls
    assert call.function.name == "get_weather"
    assert isinstance(json.loads(call.function.arguments)["city"], str)
    assert answer.choices[0].finish_reason == "tool_calls"
