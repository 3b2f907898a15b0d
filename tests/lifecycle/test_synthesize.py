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
