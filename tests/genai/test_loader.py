"""Bad checkpoints get clear errors, before anything is built; lazy shard-by-shard loading."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
from genai_helpers import save_hf_model

from famous.genai.errors import (
    PickleCheckpointRefused,
    ShapeMismatchError,
    TruncatedCheckpointError,
    UnsupportedModelError,
    WeightMapError,
)
from famous.genai.loader import load_model
from famous.genai.models import fake_hf_config, supported_model_types
from famous.genai.weight_map import Fuse, PermuteRope, permute_rope


@pytest.fixture
def llama_dir(tmp_path: Path) -> Path:
    save_hf_model(fake_hf_config("qwen2"), tmp_path)
    return tmp_path


def test_unknown_model_type(llama_dir: Path) -> None:
    cfg = json.loads((llama_dir / "config.json").read_text())
    cfg["model_type"] = "mamba9"
    (llama_dir / "config.json").write_text(json.dumps(cfg))
    with pytest.raises(UnsupportedModelError) as e:
        load_model(llama_dir)
    msg = str(e.value)
    assert "mamba9" in msg and "transformers" in msg
    for mt in supported_model_types():
        assert mt in msg


def test_truncated_shard_names_file(llama_dir: Path) -> None:
    f = llama_dir / "model.safetensors"
    data = f.read_bytes()
    f.write_bytes(data[: len(data) - 1000])
    with pytest.raises(TruncatedCheckpointError, match=r"model\.safetensors.*truncated"):
        load_model(llama_dir)


def test_shape_mismatch_names_tensor_and_shapes(llama_dir: Path) -> None:
    cfg = json.loads((llama_dir / "config.json").read_text())
    cfg["intermediate_size"] = 96  # checkpoint has 128
    (llama_dir / "config.json").write_text(json.dumps(cfg))
    with pytest.raises(ShapeMismatchError) as e:
        load_model(llama_dir)
    msg = str(e.value)
    assert "model.layers.0.mlp.gate_proj.weight" in msg and "[128, 64]" in msg and "[96, 64]" in msg


def test_pickle_refused_without_opt_in(tmp_path: Path) -> None:
    from transformers import AutoConfig, AutoModelForCausalLM

    torch.manual_seed(0)
    m = AutoModelForCausalLM.from_config(AutoConfig.for_model(**fake_hf_config("llama")))
    m.save_pretrained(tmp_path, safe_serialization=False) if _supports_pickle_save() else None
    if not list(tmp_path.glob("*.bin")):
        m.config.save_pretrained(tmp_path)
        torch.save(m.state_dict(), tmp_path / "pytorch_model.bin")
    with pytest.raises(PickleCheckpointRefused, match="allow_pickle"):
        load_model(tmp_path)
    model = load_model(tmp_path, allow_pickle=True)  # opting in works (weights_only)
    ids = torch.arange(8)[None]
    with torch.no_grad():
        assert torch.allclose(
            m(ids).logits, model(ids, torch.arange(8), model.init_cache())[0], atol=1e-5
        )


def _supports_pickle_save() -> bool:
    return False  # transformers 5 always writes safetensors; write the .bin ourselves


def test_unused_and_missing_tensors_are_named(llama_dir: Path) -> None:
    from safetensors.torch import load_file, save_file

    sd = load_file(llama_dir / "model.safetensors")
    sd["model.layers.0.self_attn.extra.weight"] = torch.zeros(2)
    save_file(sd, llama_dir / "model.safetensors")
    with pytest.raises(WeightMapError, match=r"model\.layers\.0\.self_attn\.extra\.weight"):
        load_model(llama_dir)
    del sd["model.layers.0.self_attn.extra.weight"]
    del sd["model.layers.1.self_attn.k_proj.bias"]
    save_file(sd, llama_dir / "model.safetensors")
    with pytest.raises(WeightMapError, match=r"model\.layers\.1\.self_attn\.k_proj\.bias"):
        load_model(llama_dir)


def test_integer_tensors_are_refused_not_cast(llama_dir: Path, tmp_path: Path) -> None:
    """An I32 tensor where the model has a float parameter (an fp32 checkpoint otherwise)
    is named with its dtype by the loader and by the GGUF exporter; neither casts it."""
    from safetensors.torch import load_file, save_file

    from famous.genai.errors import CheckpointError
    from famous.genai.export.gguf import export_gguf

    sd = load_file(llama_dir / "model.safetensors")
    name = "model.layers.1.mlp.down_proj.weight"
    sd[name] = torch.randint(-8, 8, sd[name].shape, dtype=torch.int32)
    save_file(sd, llama_dir / "model.safetensors")
    with pytest.raises(CheckpointError, match=rf"{name}.*I32.*floating point") as e:
        load_model(llama_dir)
    assert "model.safetensors" in str(e.value)
    with pytest.raises(CheckpointError, match=rf"{name}.*I32"):
        export_gguf(llama_dir, tmp_path / "export" / "out.gguf", "f32")
    assert not (tmp_path / "export").exists() or not any((tmp_path / "export").iterdir())


def test_sharded_checkpoint_with_rule_across_shards(tmp_path: Path) -> None:
    """q/k/v in different shards still fuse; the index names the shards."""
    from safetensors.torch import load_file, save_file

    hf = save_hf_model(fake_hf_config("llama"), tmp_path)
    sd = load_file(tmp_path / "model.safetensors")
    (tmp_path / "model.safetensors").unlink()
    names = sorted(sd)
    a = {k: v for k, v in sd.items() if "k_proj" not in k}
    b = {k: v for k, v in sd.items() if "k_proj" in k}
    save_file(a, tmp_path / "model-00001-of-00002.safetensors")
    save_file(b, tmp_path / "model-00002-of-00002.safetensors")
    index = {
        "metadata": {},
        "weight_map": {
            k: (
                "model-00002-of-00002.safetensors"
                if "k_proj" in k
                else "model-00001-of-00002.safetensors"
            )
            for k in names
        },
    }
    (tmp_path / "model.safetensors.index.json").write_text(json.dumps(index))
    model = load_model(tmp_path)
    ids = torch.arange(10)[None]
    with torch.no_grad():
        assert torch.allclose(
            hf(ids).logits, model(ids, torch.arange(10), model.init_cache())[0], atol=1e-5
        )


def test_transforms_round_trip() -> None:
    w = torch.randn(2 * 8, 5)
    assert torch.equal(permute_rope(permute_rope(w, 2, 8, inverse=True), 2, 8), w)
    assert PermuteRope(2, 8).source_shapes((16, 5), 1) == [(16, 5)]
    assert Fuse(0, (4, 2, 2)).source_shapes((8, 3), 3) == [(4, 3), (2, 3), (2, 3)]
