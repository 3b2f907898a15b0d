"""famous-native (``famous.genai``) on the real SmolLM2 weights (the fp32 folder): ``famous
verify``, the pipeline and ``famous genai generate``, and the native server behind the
official ``openai`` client."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import openai
import pytest
from engine_helpers import streamed
from realweights_helpers import (
    CHAT,
    COMPLETION,
    CONVERSATIONS,
    MODEL,
    Reference,
    names_paris,
)
from typer.testing import CliRunner

from famous.cli.main import app
from famous.genai.pipeline import Pipeline
from famous.genai.sampling import SamplingParams
from famous.runtimes import get_runtime
from famous.runtimes.base import EngineProcess, LaunchSpec, free_port

pytestmark = [pytest.mark.slow, pytest.mark.timeout(300)]

runner = CliRunner()


@pytest.fixture(scope="module")
def pipeline(smollm2_hf_dir: Path) -> Pipeline:
    return Pipeline.from_pretrained(smollm2_hf_dir, dtype="fp32", max_seq_len=512)


def test_verify_cli(smollm2_hf_dir: Path) -> None:
    """``famous verify DIR``: prefill logits and 8 greedy tokens against transformers."""
    r = runner.invoke(
        app,
        [
            "verify",
            str(smollm2_hf_dir),
            "--format",
            "json",
            "--prompt-tokens",
            "16",
            "--new-tokens",
            "8",
        ],
    )
    assert r.exit_code == 0, r.output
    report = json.loads(r.stdout)
    assert report["ok"] is True and report["model_type"] == "llama"
    assert report["greedy_match"] is True and report["first_mismatch"] is None
    assert report["famous_tokens"] == report["reference_tokens"]
    assert len(report["famous_tokens"]) == report["new_tokens"] == 8
    # Observed: 0.0 (famous's fp32 prefill runs the same PyTorch ops in the same order as
    # transformers' Llama); the documented promise is 1e-4.
    assert report["max_abs_logit_diff"] <= 1e-4


def test_pipeline_greedy_equals_transformers(pipeline: Pipeline, reference: Reference) -> None:
    """Greedy decoding (famous's CPU kernels) follows transformers token for token on real
    text (20 tokens, " Paris.\n\nThe answer is: 2018-01-22 12:…"); the first are " Paris."."""
    ids = pipeline.encode(COMPLETION)
    result = pipeline.generate(COMPLETION, SamplingParams(max_new_tokens=20))
    assert result.finish_reason == "length"
    assert result.token_ids == reference.greedy(ids, 20)[0]
    assert result.text.startswith(" Paris"), result.text


def test_pipeline_chat_names_paris(pipeline: Pipeline, reference: Reference, hf_tokenizer) -> None:
    prompt = pipeline.chat_prompt(CHAT)
    result = pipeline.chat(CHAT, SamplingParams(max_new_tokens=48))
    assert names_paris(result.text), result.text
    assert result.finish_reason == "stop"  # <|im_end|> after one sentence
    ids = pipeline.encode(prompt, chat=True)
    want, logits = reference.greedy(ids, len(result.token_ids))
    assert result.token_ids == want
    assert int(logits[-1].argmax()) in pipeline.eos_ids  # <|im_end|>
    assert hf_tokenizer.decode(want) == result.text


def test_native_server_prompt_is_the_template(pipeline: Pipeline, hf_tokenizer) -> None:
    """The native server's backend renders chats through the pipeline's tokenizer."""
    from famous.runtimes.workers.native import PipelineBackend

    backend = PipelineBackend(pipeline)
    for conversation in CONVERSATIONS:
        want = hf_tokenizer.apply_chat_template(
            conversation, add_generation_prompt=True, tokenize=False
        )
        assert backend.chat_prompt(conversation) == want


def test_genai_generate_cli(smollm2_hf_dir: Path) -> None:
    r = runner.invoke(
        app, ["genai", "generate", str(smollm2_hf_dir), COMPLETION, "--max-tokens", "8"]
    )
    assert r.exit_code == 0, r.output
    assert r.stdout.startswith(" Paris"), r.stdout


# ------------------------------------------------------------------------------ native server


@pytest.fixture(scope="module")
def native_server(smollm2_hf_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """``python -m famous.runtimes.workers.native`` as famous launches it (the famous-native
    runtime's adapter), on a free 127.0.0.1 port; stopped by this fixture."""
    adapter = get_runtime("famous-native", {"context-size": 1024})
    spec = LaunchSpec(
        name=MODEL,
        model_path=smollm2_hf_dir,
        port=free_port(),
        log_path=tmp_path_factory.mktemp("native") / "native.log",
    )
    proc: EngineProcess = adapter.launch(spec)
    try:
        proc.wait_healthy(timeout=180)
        yield proc.base_url
    finally:
        proc.stop()
        assert not proc.alive()


def test_native_server_answers_paris(native_server: str) -> None:
    client = openai.OpenAI(base_url=native_server + "/v1", api_key="unused", max_retries=0)
    request = {"model": MODEL, "messages": CHAT, "max_tokens": 48, "temperature": 0, "seed": 0}
    reply = client.chat.completions.create(**request)
    choice = reply.choices[0]
    assert names_paris(choice.message.content), choice.message.content
    assert choice.finish_reason == "stop"
    text, finish, chunks = streamed(client.chat.completions.create(**request, stream=True))
    assert (text, finish) == (choice.message.content, "stop")
    assert chunks >= 2
