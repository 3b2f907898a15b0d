"""Packages synthesized from a repo listing route each architecture to an engine that runs it."""

from __future__ import annotations

from famous.hub.client import RemoteFile, RepoListing
from famous.hub.synthesize import synthesize_package


def listing(repo: str) -> RepoListing:
    files = [
        RemoteFile(path="model.safetensors", size=200_000_000, sha256="a" * 64),
        RemoteFile(path="config.json", size=600, blob_id="b" * 40),
        RemoteFile(path="tokenizer.json", size=9_000, blob_id="c" * 40),
    ]
    return RepoListing(repo_id=repo, revision="d" * 40, files=files)


def config(model_type: str) -> dict:
    return {
        "model_type": model_type,
        "num_hidden_layers": 2,
        "num_attention_heads": 4,
        "num_key_value_heads": 2,
        "hidden_size": 64,
        "max_position_embeddings": 512,
        "torch_dtype": "bfloat16",
    }


def test_a_family_famous_reauthors_gets_the_native_engine_and_transformers() -> None:
    package = synthesize_package(listing("org/tiny-llama"), config=config("llama"))
    assert {"native-cpu", "transformers-cpu"} <= set(package.engines)


def test_an_architecture_famous_lacks_goes_to_transformers_only() -> None:
    package = synthesize_package(listing("org/tiny-neox"), config=config("gpt_neox"))
    assert "transformers-cpu" in package.engines
    assert "native-cpu" not in package.engines


def test_a_gguf_repo_with_a_projector_sees_and_every_variant_carries_one() -> None:
    files = [
        RemoteFile(path="m-Q4_K_M.gguf", size=4_000, sha256="a" * 64),
        RemoteFile(path="m-Q8_0.gguf", size=8_000, sha256="b" * 64),
        RemoteFile(path="mmproj-m-f32.gguf", size=900, sha256="c" * 64),
        RemoteFile(path="mmproj-m-bf16.gguf", size=500, sha256="d" * 64),
    ]
    package = synthesize_package(RepoListing(repo_id="org/m", revision="e" * 40, files=files))
    assert "vision" in package.model.capabilities
    options = package.model.options
    assert set(options) == {"q4_k_m", "q8_0"}  # a projector is no variant
    assert options["q4_k_m"].files == ["m-Q4_K_M.gguf", "mmproj-m-bf16.gguf"]
    assert options["q4_k_m"].size == 4_500


def test_a_mixture_of_experts_config_gets_its_active_parameters() -> None:
    """Qwen3-30B-A3B's config: 128 experts of width 768, 8 routed per token, 48 layers."""
    moe = {
        **config("qwen3_moe"),
        "num_hidden_layers": 48,
        "hidden_size": 2048,
        "moe_intermediate_size": 768,
        "num_experts": 128,
        "num_experts_per_tok": 8,
    }
    big = [RemoteFile(path="model.safetensors", size=61_064_245_248, sha256="a" * 64)]
    repo = RepoListing(repo_id="org/moe", revision="d" * 40, files=big + listing("x/y").files[1:])
    shape = synthesize_package(repo, config=moe).model.shape
    assert 30.5e9 < shape.parameters < 30.6e9  # bf16 bytes / 2
    assert shape.active_parameters is not None
    assert 3.2e9 < shape.active_parameters < 3.5e9  # Qwen's model card: 3.3B activated
    dense = synthesize_package(listing("org/tiny-llama"), config=config("llama")).model.shape
    assert dense.active_parameters is None and dense.active == dense.parameters
