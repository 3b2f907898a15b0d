"""GGUF conversion cost and the quality / speed of every recipe × target, in one command.

Run: python benchmarks/gguf_convert.py [--skip-1b] [--decode-tokens N]

1. A Llama-3.2-1B-shape random model (bf16 safetensors, 1.24 B parameters) is converted to
   GGUF Q8_0 in a child process: wall time and the child's peak RSS against the model's bytes.
   Goal: peak RSS ≤ model bytes + 1 GiB (famous streams tensor by tensor).
2. On a small Llama (SmolLM2-135M widths, 4 layers, random weights) every recipe runs on
   every target that can run it: size, KL and top-1 vs famous fp32, decode tok/s (famous
   eager for torch, llama.cpp for GGUF) and, for torch recipes, the cosine of the real
   all-MiniLM-L6-v2 embeddings with the recipe applied.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

GIB = 1 << 30

LLAMA_1B = {
    "model_type": "llama",
    "architectures": ["LlamaForCausalLM"],
    "hidden_size": 2048,
    "intermediate_size": 8192,
    "num_hidden_layers": 16,
    "num_attention_heads": 32,
    "num_key_value_heads": 8,
    "head_dim": 64,
    "vocab_size": 128256,
    "max_position_embeddings": 131072,
    "rms_norm_eps": 1e-5,
    "rope_theta": 500000.0,
    "rope_scaling": {
        "rope_type": "llama3",
        "factor": 32.0,
        "low_freq_factor": 1.0,
        "high_freq_factor": 4.0,
        "original_max_position_embeddings": 8192,
    },
    "tie_word_embeddings": True,
    "hidden_act": "silu",
    "bos_token_id": 1,
    "eos_token_id": 2,
    "torch_dtype": "bfloat16",
}


def small_config() -> dict:
    """famous's realistic Llama test shape (SmolLM2-135M widths), at 4 layers."""
    from famous.genai.models.llama import FAMILY

    return {**FAMILY.realistic_hf_configs["llama"], "num_hidden_layers": 4}


def _tokenizer(out: Path) -> None:
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers

    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=400,
        special_tokens=["<pad>", "<s>", "</s>"],
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
    )
    tok.train_from_iterator(["The quick brown fox jumps over the lazy dog. 0 1 2 3"] * 50, trainer)
    tok.save(str(out / "tokenizer.json"))
    (out / "tokenizer_config.json").write_text(
        json.dumps({"bos_token": "<s>", "eos_token": "</s>", "add_bos_token": True})
    )


def make_random_model(cfg: dict, out: Path, dtype: str = "bfloat16", std: float = 0.02) -> int:
    """Random weights written straight to safetensors (no transformers model in memory
    twice); returns the bytes of the weights."""
    import torch
    from safetensors.torch import save_file

    out.mkdir(parents=True, exist_ok=True)
    torch.manual_seed(0)
    dt = getattr(torch, dtype)
    h, f, n = cfg["hidden_size"], cfg["intermediate_size"], cfg["num_hidden_layers"]
    hd = cfg.get("head_dim") or h // cfg["num_attention_heads"]
    q, kv = cfg["num_attention_heads"] * hd, cfg["num_key_value_heads"] * hd

    def rnd(*shape: int) -> torch.Tensor:
        return (torch.randn(*shape) * std).to(dt)

    tensors = {
        "model.embed_tokens.weight": rnd(cfg["vocab_size"], h),
        "model.norm.weight": torch.ones(h, dtype=dt),
    }
    for i in range(n):
        p = f"model.layers.{i}."
        tensors.update(
            {
                p + "self_attn.q_proj.weight": rnd(q, h),
                p + "self_attn.k_proj.weight": rnd(kv, h),
                p + "self_attn.v_proj.weight": rnd(kv, h),
                p + "self_attn.o_proj.weight": rnd(h, q),
                p + "mlp.gate_proj.weight": rnd(f, h),
                p + "mlp.up_proj.weight": rnd(f, h),
                p + "mlp.down_proj.weight": rnd(h, f),
                p + "input_layernorm.weight": torch.ones(h, dtype=dt),
                p + "post_attention_layernorm.weight": torch.ones(h, dtype=dt),
            }
        )
    save_file(tensors, str(out / "model.safetensors"), metadata={"format": "pt"})
    size = sum(t.numel() * t.element_size() for t in tensors.values())
    del tensors
    (out / "config.json").write_text(json.dumps({**cfg, "torch_dtype": dtype}))
    _tokenizer(out)
    return size


# Peak RSS from /proc/self/status VmHWM: getrusage's ru_maxrss survives fork + exec, so a
# child of a big parent would report the parent's size.
CHILD = r"""
import sys, time, json
from famous.genai.export.gguf import export_gguf
t = time.perf_counter()
r = export_gguf(sys.argv[1], sys.argv[2], sys.argv[3], overwrite=True)
hwm = next(l for l in open("/proc/self/status") if l.startswith("VmHWM:"))
print(json.dumps({"seconds": time.perf_counter() - t, "size": r.size_bytes,
                  "maxrss": int(hwm.split()[1]) * 1024}))
"""


def convert_1b(work: Path) -> dict:
    src = work / "llama-3.2-1b-shape"
    t = time.perf_counter()
    model_bytes = make_random_model(LLAMA_1B, src)
    made = time.perf_counter() - t
    out = subprocess.run(
        [sys.executable, "-c", CHILD, str(src), str(work / "model-q8_0.gguf"), "q8_0"],
        capture_output=True,
        text=True,
        check=True,
    )
    res = json.loads(out.stdout.strip().splitlines()[-1])
    res.update(model_bytes=model_bytes, made_seconds=made)
    return res


def quality_table(work: Path, decode_tokens: int) -> list:
    from famous.genai.quality import quality_report

    src = work / "small-llama"
    make_random_model(small_config(), src, dtype="float32", std=0.05)
    torch_recipes = [
        "fp32",
        "fp16",
        "bf16",
        "int8",
        "int4",
        "int4-b128",
        "int4-mixed",
        "dynamic-int8",
    ]
    gguf_recipes = ["fp32", "fp16", "bf16", "q8_0", "q4_0", "int4", "q4_k_m", "q5_k_m", "q6_k"]
    rows = quality_report(src, torch_recipes, "torch", decode_tokens=decode_tokens, embeddings=True)
    rows += quality_report(src, gguf_recipes, "gguf", decode_tokens=decode_tokens)
    return rows


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--skip-1b", action="store_true", help="Only the recipe table.")
    ap.add_argument("--decode-tokens", type=int, default=32)
    ap.add_argument("--workdir", default=None, help="Scratch folder (needs ~4 GB).")
    args = ap.parse_args()
    import torch

    torch.set_num_threads(min(4, os.cpu_count() or 1))
    with tempfile.TemporaryDirectory(dir=args.workdir, prefix="famous-bench-") as tmp:
        work = Path(tmp)
        if not args.skip_1b:
            r = convert_1b(work)
            over = r["maxrss"] - r["model_bytes"]
            print("## Llama-3.2-1B shape → GGUF Q8_0 (bf16 safetensors source)")
            print(f"model bytes     {r['model_bytes'] / GIB:.2f} GiB")
            print(f"GGUF bytes      {r['size'] / GIB:.2f} GiB")
            print(f"wall time       {r['seconds']:.1f} s")
            print(
                f"peak RSS        {r['maxrss'] / GIB:.2f} GiB  "
                f"(model bytes {'+' if over >= 0 else '-'} {abs(over) / GIB:.2f} GiB)"
            )
            ok = r["maxrss"] <= r["model_bytes"] + GIB
            print(f"goal            peak RSS ≤ model bytes + 1 GiB: {'met' if ok else 'MISSED'}")
            print()
        from famous.genai.quality import format_table

        print(
            "## recipes × targets (Llama, SmolLM2-135M widths, 4 layers, random weights; "
            f"{os.cpu_count()} cores)"
        )
        print(format_table(quality_table(work, args.decode_tokens)))


if __name__ == "__main__":
    main()
