"""Helpers of the GGUF tests: model folders export_helpers cannot make (other widths, other
tokenizers, weights trained to be confident), and what llama.cpp itself reads back from a
GGUF (logits, tokens, text), through llama-cpp-python, the real engine."""

from __future__ import annotations

import contextlib
import ctypes
import json
import os
import shutil
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import numpy as np
import torch
from export_helpers import CORPUS, load, train_tokenizer


def save_random_model(
    kind: str, out: Path, *, tokenizer: bool = True, seed: int = 0, **config: Any
) -> Path:
    """A random two-layer model of family ``kind`` with ``config`` over famous's fake shape
    (``make_model`` with other widths), and the locally trained byte-level BPE tokenizer
    unless ``tokenizer=False`` (then ``config`` must give ``vocab_size``)."""
    from transformers import AutoConfig, AutoModelForCausalLM

    from famous.genai.models import fake_hf_config

    cfg = fake_hf_config(kind)
    cfg.update(bos_token_id=1, eos_token_id=2, pad_token_id=0, initializer_range=0.2)
    if tokenizer:
        cfg["vocab_size"] = train_tokenizer(out)
    cfg.update(config)
    torch.manual_seed(seed)
    model = AutoModelForCausalLM.from_config(AutoConfig.for_model(**cfg)).eval()
    model.save_pretrained(out)
    return out


def memorize_corpus(model_dir: Path, steps: int = 25, lr: float = 0.03) -> Path:
    """Fine-tune the model in ``model_dir`` on export_helpers' corpus until it continues each
    sentence with confidence (top-1 ahead of the runner-up by several logits), and save it
    back: greedy tokens then do not hinge on near-ties that rounding can flip."""
    from tokenizers import Tokenizer
    from transformers import AutoModelForCausalLM

    tok = Tokenizer.from_file(str(model_dir / "tokenizer.json"))
    enc = [tok.encode(s).ids for s in sorted(set(CORPUS))]
    width = max(map(len, enc))
    ids = torch.tensor([e + [0] * (width - len(e)) for e in enc])
    mask = torch.tensor([[1] * len(e) + [0] * (width - len(e)) for e in enc])
    torch.manual_seed(0)
    model = AutoModelForCausalLM.from_pretrained(model_dir).train()
    opt = torch.optim.Adam(model.parameters(), lr=lr)
    for _ in range(steps):
        loss = model(input_ids=ids, attention_mask=mask, labels=ids.masked_fill(mask == 0, -100))
        opt.zero_grad()
        loss.loss.backward()
        opt.step()
    model.eval().save_pretrained(model_dir)
    return model_dir


def with_tokenizer(weights: Path, out: Path, tokenizer: Any, tokenizer_config: dict) -> Path:
    """A model folder with the config and weights of ``weights`` (linked) and its own
    tokenizer files."""
    import json

    out.mkdir(parents=True, exist_ok=True)
    for name in ("config.json", "model.safetensors"):
        os.symlink(weights / name, out / name)
    tokenizer.save(str(out / "tokenizer.json"))
    (out / "tokenizer_config.json").write_text(json.dumps(tokenizer_config))
    return out


def hf_logits(model_dir: Path, ids: list[int]) -> np.ndarray:
    """transformers' fp32 logits for ``ids`` (one row per position)."""
    from transformers import AutoModelForCausalLM

    model = AutoModelForCausalLM.from_pretrained(model_dir, dtype=torch.float32).eval()
    with torch.no_grad():
        return model(torch.tensor([ids])).logits[0].numpy()


def hf_greedy(model_dir: Path, ids: list[int], n: int) -> list[int]:
    from transformers import AutoModelForCausalLM

    model = AutoModelForCausalLM.from_pretrained(model_dir, dtype=torch.float32).eval()
    with torch.no_grad():
        out = model.generate(
            torch.tensor([ids]), max_new_tokens=n, do_sample=False, eos_token_id=None
        )
    return out[0, len(ids) :].tolist()


def family_exports(
    factory: Any, make: Callable[[str, Path], Any], arch: dict[str, str]
) -> Callable[[str], tuple[Path, Path]]:
    """``get(kind)``: once per family, ``make(kind, folder)`` saves a model there, then
    famous's f32 GGUF of it is written beside it (checked to name ``arch[kind]``)."""
    from famous.genai.export.gguf import export_gguf

    done: dict[str, tuple[Path, Path]] = {}

    def get(kind: str) -> tuple[Path, Path]:
        if kind not in done:
            model = factory.mktemp(f"gguf-{kind}")
            make(kind, model)
            result = export_gguf(model, model / "model.gguf", "f32")
            assert result.architecture == arch[kind]
            done[kind] = (model, result.path)
        return done[kind]

    return get


def assert_export_refused(model: Path, match: str) -> None:
    """export_gguf refuses ``model`` with a message matching ``match``, leaving no file."""
    import pytest

    from famous.genai.export.gguf import GGUFExportError, export_gguf

    out = model.parent / "refused.gguf"
    with pytest.raises(GGUFExportError, match=match):
        export_gguf(model, out, "f16")
    assert not out.exists()
    assert not list(model.parent.glob("*.partial"))


def famous_greedy(model_dir: Path, ids: list[int], n: int) -> list[int]:
    """famous's eager model, greedy: one prefill, then its decode step per token."""
    from famous.genai.kernels.decode import decode

    model = load(model_dir)
    cache = model.init_cache(1)
    out: list[int] = []
    with torch.no_grad():
        logits, cache = model(torch.tensor([ids]), torch.arange(len(ids)), cache)
        for i in range(n):
            out.append(int(logits[0, -1].argmax()))
            pos = torch.tensor([len(ids) + i])
            logits, cache = decode(model, torch.tensor([out[-1:]]), pos, cache)
    return out


@contextlib.contextmanager
def llama(path: Path, **kwargs: Any) -> Iterator[Any]:
    """llama.cpp on ``path`` (one thread: a shared CPU makes llama.cpp's thread barriers
    slow, and the results do not depend on the thread count)."""
    from llama_cpp import Llama

    opts = {"n_ctx": 64, "n_threads": 1, "n_threads_batch": 1, "verbose": False}
    llm = Llama(model_path=str(path), **{**opts, **kwargs})
    try:
        yield llm
    finally:
        llm.close()


def llama_logits(path: Path, ids: list[int]) -> np.ndarray:
    with llama(path, logits_all=True) as llm:
        llm.eval(ids)
        return np.array(llm.scores[: len(ids)], dtype=np.float32)


def llama_greedy(path: Path, ids: list[int], n: int) -> list[int]:
    with llama(path, logits_all=True) as llm:
        llm.eval(ids)
        out: list[int] = []
        for _ in range(n):
            out.append(int(np.argmax(llm.scores[llm.n_tokens - 1])))
            llm.eval(out[-1:])
        return out


def llama_detokenize(llm: Any, ids: list[int]) -> str:
    """llama.cpp's own detokenizer (``llama_detokenize``, special tokens rendered), not
    llama-cpp-python's piece concatenation."""
    import llama_cpp

    vocab = llama_cpp.llama_model_get_vocab(llm.model)
    arr = (llama_cpp.llama_token * len(ids))(*ids)
    buf = ctypes.create_string_buffer(8192)
    n = llama_cpp.llama_detokenize(vocab, arr, len(ids), buf, len(buf), False, True)
    assert n >= 0, f"llama_detokenize needs {-n} bytes"
    return buf.raw[:n].decode("utf-8")


def fields(path: Path) -> dict[str, Any]:
    """Every metadata field of a GGUF as the ``gguf`` package reads it."""
    import gguf

    reader = gguf.GGUFReader(str(path))
    return {k: f.contents() for k, f in reader.fields.items() if not k.startswith("GGUF.")}


def tensors(path: Path) -> dict[str, Any]:
    import gguf

    return {t.name: t for t in gguf.GGUFReader(str(path)).tensors}


def kl(ref: np.ndarray, got: np.ndarray) -> float:
    """Mean KL(softmax(ref) ‖ softmax(got)) per row."""
    lp = torch.log_softmax(torch.from_numpy(ref).double(), -1)
    lq = torch.log_softmax(torch.from_numpy(got).double(), -1)
    return float((lp.exp() * (lp - lq)).sum(-1).mean())


def with_config(model: Path, out: Path, **changes: object) -> Path:
    """A copy of the model folder (no GGUF) with ``changes`` made to its config.json."""
    shutil.copytree(model, out, ignore=shutil.ignore_patterns("*.gguf"))
    conf = json.loads((out / "config.json").read_text())
    (out / "config.json").write_text(json.dumps({**conf, **changes}))
    return out
