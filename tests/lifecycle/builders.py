"""Tiny model repos for the lifecycle tests: real GGUF (gguf.GGUFWriter) and safetensors files."""

from __future__ import annotations

import json
import os
import tempfile
from pathlib import Path

import numpy as np

QUANT_TYPES = {"Q4_K_M": 15, "Q8_0": 7, "F16": 1, "Q4_0": 2, "Q5_K_M": 17}


def tiny_gguf(quant: str = "Q4_K_M", payload: int = 64 * 1024, arch: str = "llama") -> bytes:
    """A valid GGUF file with the metadata famous reads and ``payload`` bytes of tensor data."""
    from gguf import GGUFWriter

    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "m.gguf"
        writer = GGUFWriter(str(path), arch)
        writer.add_name(f"tiny-{quant.lower()}")
        writer.add_context_length(2048)
        writer.add_block_count(2)
        writer.add_embedding_length(64)
        writer.add_head_count(4)
        writer.add_head_count_kv(2)
        writer.add_file_type(QUANT_TYPES.get(quant, 1))
        rng = np.random.default_rng(len(quant) + payload)
        writer.add_tensor("token_embd.weight", rng.random(max(payload // 4, 16), dtype=np.float32))
        writer.write_header_to_file()
        writer.write_kv_data_to_file()
        writer.write_tensors_to_file()
        writer.close()
        return path.read_bytes()


def gguf_repo(name: str = "tiny", payload: int = 256 * 1024) -> dict[str, bytes]:
    return {
        "README.md": b"# tiny\n",
        f"{name}-q4_k_m.gguf": tiny_gguf("Q4_K_M", payload),
        f"{name}-q8_0.gguf": tiny_gguf("Q8_0", payload * 2),
        f"{name}-f16-00001-of-00002.gguf": tiny_gguf("F16", payload * 2),
        f"{name}-f16-00002-of-00002.gguf": os.urandom(payload * 2),
    }


def safetensors_repo(with_pickle: bool = True) -> dict[str, bytes]:
    from safetensors.numpy import save

    config = {
        "architectures": ["LlamaForCausalLM"],
        "model_type": "llama",
        "hidden_size": 64,
        "num_attention_heads": 4,
        "num_key_value_heads": 2,
        "num_hidden_layers": 2,
        "max_position_embeddings": 2048,
        "torch_dtype": "float32",
        "vocab_size": 128,
    }
    rng = np.random.default_rng(0)
    weights = save({"model.embed_tokens.weight": rng.random((128, 64), dtype=np.float32)})
    files = {
        "config.json": json.dumps(config).encode(),
        "model.safetensors": weights,
        "tokenizer.json": json.dumps({"version": "1.0", "model": {"type": "BPE"}}).encode(),
        "tokenizer_config.json": b"{}",
        "generation_config.json": b"{}",
        "modeling_custom.py": b"import os\nos.system('echo pwned')\n",
        "README.md": b"# tiny\n",
    }
    if with_pickle:
        files["pytorch_model.bin"] = os.urandom(4096)
    return files


def pickle_only_repo() -> dict[str, bytes]:
    files = safetensors_repo(with_pickle=True)
    del files["model.safetensors"]
    return files


def vision_gguf_repo(payload: int = 64 * 1024) -> dict[str, bytes]:
    """A GGUF repo that can see: two quantizations and its projector in three precisions."""
    repo = {k: v for k, v in gguf_repo(payload=payload).items() if "f16" not in k}
    repo["mmproj-tiny-f32.gguf"] = tiny_gguf("F32", payload // 2, arch="clip")
    repo["mmproj-tiny-f16.gguf"] = tiny_gguf("F16", payload, arch="clip")
    repo["mmproj-tiny-q8_0.gguf"] = tiny_gguf("Q8_0", payload // 4, arch="clip")
    return repo
