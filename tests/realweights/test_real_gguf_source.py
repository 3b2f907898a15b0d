"""The real SmolLM2-135M-Instruct Q4_1 GGUF as famous's model source (``load_model(X.gguf)``).

References famous did not write:

- transformers' own GGUF loader (``from_pretrained(..., gguf_file=)``), which dequantizes to
  float32: the ``smollm2_hf_dir`` folder is exactly its output (``provision.py``), so
  famous's weights must equal that folder's tensor for tensor and its logits must equal
  transformers' on it (measured: max |Δ| 0.0);
- llama.cpp's own ``llama-server`` (the provisioned build) on the same file: the same
  prompt ids and the same greedy reply. llama.cpp multiplies Q4_1 weights by activations it
  rounds to Q8_1, so its logits differ from float32's by up to about a logit: greedy tokens
  are compared on the chat question whose every step is more than 1.3 logits clear
  (``realweights_helpers``), over its whole reply.
"""

from __future__ import annotations

import json
import subprocess
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import torch
from realweights_helpers import CHAT, COMPLETION, CONVERSATIONS, QUESTION, Reference, names_paris
from typer.testing import CliRunner

from famous.cli.main import app
from famous.genai.loader import load_model
from famous.genai.pipeline import Pipeline
from famous.genai.sampling import SamplingParams
from famous.genai.tokenizer import Tokenizer
from famous.runtimes.base import free_port, stop_process

pytestmark = [pytest.mark.slow, pytest.mark.timeout(300)]

TEXTS = [
    COMPLETION,
    "naïve café — 1234567 tokens!\n\tindented  twice",
    "<|im_start|>user\nHi<|im_end|>\n",
    "Prices: $3.50, €4,20; dates 2024-12-01; code `x += 1`",
]


@pytest.fixture(scope="module")
def pipe(smollm2_gguf: Path) -> Pipeline:
    started = time.monotonic()
    p = Pipeline.from_pretrained(smollm2_gguf)
    p.load_seconds = time.monotonic() - started  # type: ignore[attr-defined]
    return p


def _post(url: str, body: dict[str, Any]) -> dict[str, Any]:
    req = urllib.request.Request(
        url, json.dumps(body).encode(), {"Content-Type": "application/json"}
    )
    with urllib.request.urlopen(req, timeout=120) as r:
        return json.loads(r.read())


@pytest.fixture(scope="module")
def llama_server(llama_server_binary: Path, smollm2_gguf: Path) -> Iterator[str]:
    port = free_port()
    argv = [str(llama_server_binary), "-m", str(smollm2_gguf), "--port", str(port)]
    argv += ["-c", "1024", "-t", "2", "--no-warmup"]
    proc = subprocess.Popen(
        argv, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True
    )
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline:
            try:
                with urllib.request.urlopen(url + "/health", timeout=2) as r:
                    if r.status == 200:
                        break
            except OSError:
                time.sleep(0.3)
        else:
            raise RuntimeError("llama-server did not become healthy in 120 s")
        yield url
    finally:
        stop_process(proc.pid, popen=proc)


def test_weights_and_logits_equal_transformers_gguf_loader(
    pipe: Pipeline, smollm2_hf_dir: Path, reference: Reference
) -> None:
    folder = load_model(smollm2_hf_dir)
    theirs = dict(folder.named_parameters())
    for name, p in pipe.model.named_parameters():
        assert torch.equal(p, theirs[name]), name
    ids = pipe.encode(COMPLETION)
    with torch.inference_mode():
        ref = reference.model(torch.tensor([ids])).logits[0].float()
        n = len(ids)
        ours, _ = pipe.model(torch.tensor([ids]), torch.arange(n), pipe.model.init_cache(1), end=n)
    diff = (ours[0].float() - ref).abs().max().item()
    assert diff < 1e-4, diff
    assert pipe.load_seconds < 60  # type: ignore[attr-defined]


def test_tokenizer_and_template_equal_transformers_and_llama_cpp(
    smollm2_gguf: Path, hf_tokenizer: Any, llama_server: str
) -> None:
    ours = Tokenizer(smollm2_gguf)
    for text in TEXTS:
        ids = ours.encode(text)
        assert ids == hf_tokenizer(text).input_ids, text
        served = _post(llama_server + "/tokenize", {"content": text, "parse_special": True})
        assert ids == served["tokens"], text
    for chat in CONVERSATIONS:
        assert ours.apply_chat_template(chat) == hf_tokenizer.apply_chat_template(
            chat, tokenize=False, add_generation_prompt=True
        )


def _served_greedy(url: str, ids: list[int], n: int) -> dict[str, Any]:
    body = {"prompt": ids, "n_predict": n, "temperature": 0.0, "top_k": 1}
    return _post(url + "/completion", {**body, "cache_prompt": False, "return_tokens": True})


def test_greedy_reply_equals_llama_server(pipe: Pipeline, llama_server: str) -> None:
    prompt = pipe.chat_prompt(CHAT)
    ours = pipe.generate(prompt, SamplingParams(max_new_tokens=48), chat=True)
    served = _served_greedy(llama_server, pipe.encode(prompt, chat=True), 48)
    # llama-server lists the end-of-sequence token it stopped on; famous does not
    assert served["tokens"] == [*ours.token_ids, *pipe.eos_ids], (served["content"], ours.text)
    assert served["content"] == ours.text and names_paris(ours.text)
    assert ours.finish_reason == "stop" and served["stop_type"] == "eos"


def test_generate_cli_on_the_gguf_prints_llama_servers_reply(
    smollm2_gguf: Path, pipe: Pipeline, llama_server: str
) -> None:
    """``famous genai generate FILE.gguf --chat`` (the template's own system message)."""
    prompt = pipe.chat_prompt([{"role": "user", "content": QUESTION}])
    served = _served_greedy(llama_server, pipe.encode(prompt, chat=True), 48)
    cli = CliRunner().invoke(
        app, ["genai", "generate", str(smollm2_gguf), QUESTION, "--chat", "-n", "48"]
    )
    assert cli.exit_code == 0, cli.output
    assert cli.stdout == served["content"] + "\n"
