"""The built-in catalog: complete shapes, unambiguous GGUF patterns, MoE active parameters.

A GGUF repo holds one file per quantization (``<model>-Q4_K_M.gguf``, ``<model>.Q8_0.gguf``,
unsloth's ``<model>-UD-Q4_K_XL.gguf``, ``…-BF16.gguf`` beside ``…-F16.gguf``). A pattern that
matches two of those would make a pull's choice depend on the repo's listing, so every
pattern is tried against the names each scheme gives every llama.cpp quantization.
"""

from __future__ import annotations

import re

import pytest

from famous.hub.formats import gguf_quant, glob_match
from famous.manifests.loader import builtin_package_names, find_package
from famous.manifests.schema import ModelOption, ModelShape

NAMES = builtin_package_names()

# Every quantization llama.cpp's quantize writes (and the float types), as file names spell them.
QUANTS = [
    "IQ1_S",
    "IQ1_M",
    "IQ2_XXS",
    "IQ2_XS",
    "IQ2_S",
    "IQ2_M",
    "IQ3_XXS",
    "IQ3_XS",
    "IQ3_S",
    "IQ3_M",
    "IQ4_XS",
    "IQ4_NL",
    "Q2_K",
    "Q2_K_L",
    "Q3_K_S",
    "Q3_K_M",
    "Q3_K_L",
    "Q3_K_XL",
    "Q4_0",
    "Q4_1",
    "Q4_K_S",
    "Q4_K_M",
    "Q4_K_L",
    "Q5_0",
    "Q5_1",
    "Q5_K_S",
    "Q5_K_M",
    "Q5_K_L",
    "Q6_K",
    "Q6_K_L",
    "Q8_0",
    "MXFP4",
    "F16",
    "BF16",
    "F32",
    "FP16",
]
# unsloth's dynamic quantizations sit beside the plain ones under a UD- prefix.
UD_QUANTS = "IQ1_S IQ1_M IQ2_XXS IQ2_M IQ3_XXS Q2_K_XL Q3_K_XL Q4_K_XL Q5_K_XL Q6_K_XL Q8_K_XL"

# config.json model_type values of mixture-of-experts families.
MOE_ARCHITECTURES = {
    "qwen3_moe",
    "qwen2_moe",
    "gpt_oss",
    "mixtral",
    "deepseek_v2",
    "deepseek_v3",
    "llama4",
    "granitemoe",
    "olmoe",
}


def repo_file_names(stem: str) -> dict[str, str]:
    """File name -> the quantization it holds, for every naming scheme in use."""
    names: dict[str, str] = {}
    for quant in QUANTS:
        label = {"FP16": "F16"}.get(quant, quant)
        for text in (quant, quant.lower()):
            names[f"{stem}-{text}.gguf"] = label
            names[f"{stem}.{text}.gguf"] = label
    for quant in UD_QUANTS.split():
        names[f"{stem}-UD-{quant}.gguf"] = f"UD-{quant}"
    return names


def quantizations_matched(option: ModelOption) -> set[str]:
    """The quantizations of the repo's naming schemes that the option's patterns select."""
    stem = option.repo.split("/", 1)[1].removesuffix("-GGUF").removesuffix("-gguf")
    names = repo_file_names(stem)
    names.update(repo_file_names(option.repo.replace("/", "_").removesuffix("-GGUF")))
    return {q for n, q in names.items() if any(glob_match(n, p) for p in option.files)}


def gguf_options() -> list[tuple[str, str, ModelOption]]:
    return [
        (name, key, option)
        for name in NAMES
        for key, option in find_package(name).model.options.items()
        if option.format == "gguf"
    ]


@pytest.mark.parametrize("name", NAMES)
def test_every_shape_is_complete(name: str) -> None:
    model = find_package(name).model
    for option in (None, *model.options):
        shape = model.shape if option is None else find_package(name).shape_of(option)
        assert shape.max_context is not None, f"{name}: max-context"
        assert shape.architecture, f"{name}: architecture"
        assert shape.context <= shape.max_context, f"{name}: context above max-context"
        assert shape.parameters >= 10_000_000, f"{name}: parameters looks like a typo"
        assert shape.head_dim in (32, 64, 80, 96, 128, 256), f"{name}: head-dim"


@pytest.mark.parametrize(("name", "key", "option"), gguf_options())
def test_each_gguf_pattern_names_exactly_one_quantization(
    name: str, key: str, option: ModelOption
) -> None:
    matched = quantizations_matched(option)
    assert matched == {option.quantization.upper()}, (
        f"{name}.{key}: {option.files} select {sorted(matched) or 'nothing'} of the names "
        f"{option.repo} uses, expected only {option.quantization}"
    )
    assert gguf_quant(option.files[0]) in (None, option.quantization.upper())


def test_the_pattern_check_catches_a_pattern_matching_two_quantizations() -> None:
    def opt(*files: str) -> ModelOption:
        return ModelOption(
            repo="unsloth/Qwen3-4B-GGUF", format="gguf", quantization="Q4_K_M", files=files, size=1
        )

    assert quantizations_matched(opt("*Q4_K_M.gguf")) == {"Q4_K_M"}
    assert quantizations_matched(opt("Qwen3-4B-Q4_K_M.gguf")) == {"Q4_K_M"}
    assert quantizations_matched(opt("*Q4_K*.gguf")) == {"Q4_K_S", "Q4_K_M", "Q4_K_L", "UD-Q4_K_XL"}
    assert quantizations_matched(opt("*f16.gguf")) == {"F16", "BF16"}  # bf16 ends in f16
    assert quantizations_matched(opt("*IQ4_XS*", "*Q4_K_M.gguf")) == {"IQ4_XS", "Q4_K_M"}


@pytest.mark.parametrize("name", NAMES)
def test_moe_packages_carry_active_parameters(name: str) -> None:
    shape = find_package(name).model.shape
    moe = shape.architecture in MOE_ARCHITECTURES or re.search(r"-a\d+(\.\d+)?b\b", name)
    if moe:
        assert shape.active_parameters is not None, f"{name} is MoE: active-parameters"
        assert shape.active_parameters < shape.parameters / 4
        assert shape.active == shape.active_parameters
    else:
        assert shape.active_parameters is None, f"{name} is dense: no active-parameters"
        assert shape.active == shape.parameters


def test_active_parameters_cannot_exceed_the_total() -> None:
    with pytest.raises(ValueError, match="active-parameters 20 exceeds parameters 10"):
        ModelShape.model_validate(
            {
                "parameters": 10,
                "active-parameters": 20,
                "layers": 1,
                "kv-heads": 1,
                "head-dim": 8,
                "context": 8,
            }
        )


def test_the_catalog_covers_what_people_run_today() -> None:
    packages = {n: find_package(n) for n in NAMES}
    for name in (
        "qwen3-0.6b",
        "qwen3-30b-a3b",
        "gemma-3-270m-it",
        "gemma-3-12b-it",
        "gpt-oss-20b",
        "mistral-small-3.2-24b-instruct",
        "qwen3-embedding-0.6b",
        "bge-m3",
        "nomic-embed-text-v1.5",
    ):
        assert name in packages
    capabilities = {c for p in packages.values() for c in p.model.capabilities}
    assert {"text", "tools", "thinking", "vision", "embedding", "rerank"} <= capabilities
    for package in packages.values():
        formats = {o.format for o in package.model.options.values()}
        engines = set(package.engines)
        if "gguf" in formats:
            assert {"cpu", "cpu-avx512", "ampere", "cuda", "rocm"} <= engines, package.name
        if "mlx" in formats:
            assert "mlx" in engines
        if "openvino" in formats:
            assert {"intel-gpu", "intel-npu"} <= engines
    reranker = packages["bge-reranker-v2-m3"]
    assert all(e.configuration.get("reranking") is True for e in reranker.engines.values())
