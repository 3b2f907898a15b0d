"""MLX, transformers, OpenVINO and famous-native engines, launched by famous, through its gateway.

For each runtime the official ``openai`` client asks the gateway (which starts the engine
on demand) and must get, at temperature 0, exactly what the runtime's own Python API
generates for the same prompt on the same random-weight model: chat and completions,
streamed and not.
"""

from __future__ import annotations

from collections.abc import Callable
from functools import cache
from pathlib import Path

import openai
import pytest
from engine_helpers import register, streamed

pytestmark = pytest.mark.slow

MESSAGES = [{"role": "user", "content": "tell me a story about silicon"}]
PROMPT = "the quick brown fox"
N = 20


# -- each runtime's own Python API: the reference answers -------------------------------


@cache
def _transformers(path: str) -> tuple[object, object]:
    from transformers import AutoModelForCausalLM, AutoTokenizer

    return AutoTokenizer.from_pretrained(path), AutoModelForCausalLM.from_pretrained(path)


def transformers_reference(path: Path, chat: bool) -> str:
    import torch

    tok, model = _transformers(str(path))
    prompt = (
        tok.apply_chat_template(MESSAGES, tokenize=False, add_generation_prompt=True)
        if chat
        else PROMPT
    )
    ids = tok(prompt, return_tensors="pt", add_special_tokens=not chat)["input_ids"]
    with torch.inference_mode():
        out = model.generate(ids, do_sample=False, max_new_tokens=N)
    return tok.decode(out[0, ids.shape[1] :], skip_special_tokens=True)


@cache
def _mlx(path: str) -> tuple[object, object]:
    from mlx_lm import load

    return load(path)


def mlx_reference(path: Path, chat: bool) -> str:
    from mlx_lm import generate

    model, tok = _mlx(str(path))
    prompt = tok.apply_chat_template(MESSAGES, add_generation_prompt=True) if chat else PROMPT
    return generate(model, tok, prompt, max_tokens=N)


@cache
def _openvino(path: str) -> object:
    import openvino_genai

    return openvino_genai.LLMPipeline(path, "CPU")


def openvino_reference(path: Path, chat: bool) -> str:
    pipe = _openvino(str(path))
    tok = pipe.get_tokenizer()
    prompt = tok.apply_chat_template(MESSAGES, add_generation_prompt=True) if chat else PROMPT
    return str(pipe.generate(prompt, max_new_tokens=N, do_sample=False, apply_chat_template=False))


@cache
def _native(path: str) -> object:
    from famous.genai.pipeline import Pipeline

    return Pipeline.from_pretrained(path, dtype="fp32")


def native_reference(path: Path, chat: bool) -> str:
    from famous.genai.sampling import SamplingParams

    pipe = _native(str(path))
    params = SamplingParams(max_new_tokens=N)
    return pipe.chat(MESSAGES, params).text if chat else pipe.generate(PROMPT, params).text


REFERENCES: dict[str, tuple[str, Callable[[Path, bool], str]]] = {
    "famous-native": ("hf_model", native_reference),
    "transformers": ("hf_model", transformers_reference),
    "mlx": ("mlx_model", mlx_reference),
    "openvino": ("ov_model", openvino_reference),
}


# -- helpers ---------------------------------------------------------------------------


@pytest.fixture(scope="module")
def client(gateway) -> openai.OpenAI:
    return openai.OpenAI(base_url=gateway.v1, api_key="unused", max_retries=0, timeout=180)


@pytest.fixture(scope="module", params=sorted(REFERENCES))
def served(request: pytest.FixtureRequest, gateway) -> tuple[str, Path, Callable]:
    """(model name in the gateway, model directory, reference) for one runtime."""
    runtime = request.param
    fixture, reference = REFERENCES[runtime]
    path = request.getfixturevalue(fixture)
    name = f"tiny-{runtime}"
    register(gateway, name, path, runtime)
    return name, path, reference


# -- the tests -------------------------------------------------------------------------


def test_chat_matches_runtime_api(served, client: openai.OpenAI, gateway) -> None:
    name, path, reference = served
    expected = reference(path, True)
    assert expected.strip(), "the reference generated nothing"
    whole = client.chat.completions.create(
        model=name, messages=MESSAGES, max_tokens=N, temperature=0
    )
    assert whole.model == name
    assert whole.choices[0].message.content == expected
    assert whole.choices[0].finish_reason == "length"
    assert whole.usage.completion_tokens == N
    text, finish, chunks = streamed(
        client.chat.completions.create(
            model=name, messages=MESSAGES, max_tokens=N, temperature=0, stream=True
        )
    )
    assert text == expected
    assert finish == "length"
    assert chunks >= 2
    deployment = next(d for d in gateway.ps() if d["name"] == name)
    assert deployment["state"] == "ready"


def test_completion_matches_runtime_api(served, client: openai.OpenAI) -> None:
    name, path, reference = served
    expected = reference(path, False)
    whole = client.completions.create(model=name, prompt=PROMPT, max_tokens=N, temperature=0)
    assert whole.choices[0].text == expected
    text, finish, _ = streamed(
        client.completions.create(
            model=name, prompt=PROMPT, max_tokens=N, temperature=0, stream=True
        )
    )
    assert text == expected
    assert finish == "length"


def test_stop_sequence_and_max_tokens(served, client: openai.OpenAI) -> None:
    name, path, reference = served
    expected = reference(path, True)
    # A whole streamed piece as the stop sequence: mlx_lm matches stops by token ids.
    pieces = [
        event.choices[0].delta.content or ""
        for event in client.chat.completions.create(
            model=name, messages=MESSAGES, max_tokens=N, temperature=0, stream=True
        )
        if event.choices
    ]
    offset, stop = 0, None
    for index, piece in enumerate(pieces):
        if index >= 3 and piece.strip() and expected.index(piece) == offset:
            stop = piece
            break
        offset += len(piece)
    assert stop is not None, pieces
    cut = client.chat.completions.create(
        model=name, messages=MESSAGES, max_tokens=N, temperature=0, stop=[stop]
    )
    assert cut.choices[0].message.content == expected[:offset]
    assert cut.choices[0].finish_reason == "stop"
    short = client.chat.completions.create(
        model=name, messages=MESSAGES, max_tokens=3, temperature=0
    )
    assert short.usage.completion_tokens == 3
    assert expected.startswith(short.choices[0].message.content)


def test_sampling_is_accepted(served, client: openai.OpenAI) -> None:
    name, _, _ = served
    answer = client.chat.completions.create(
        model=name, messages=MESSAGES, max_tokens=8, temperature=0.8, top_p=0.9, seed=7
    )
    assert answer.choices[0].finish_reason in ("length", "stop")
    assert answer.usage.completion_tokens <= 8


def test_engines_agree_with_transformers(request: pytest.FixtureRequest, hf_model: Path) -> None:
    """MLX's conversion, the OpenVINO IR and famous's own model compute what transformers does."""
    expected = transformers_reference(hf_model, True)
    for runtime in ("mlx", "openvino", "famous-native"):
        fixture, reference = REFERENCES[runtime]
        assert reference(request.getfixturevalue(fixture), True) == expected, runtime
