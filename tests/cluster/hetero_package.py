"""A model package of the real SmolLM2-135M-Instruct whose engine depends on the node's CPU.

Two engines, each on its own artifacts: ``cpu-avx2``, llama.cpp on the Q4_1 GGUF, for x86-64
CPUs with AVX2, FMA and F16C (what famous's llama-server build for this machine uses, its
build key says ``x86_64-avx2``); and ``native-cpu``, famous-native (PyTorch) on the fp32
safetensors, for any 64-bit CPU. On a CPU with AVX2 the matchmaker scores ``cpu-avx2``
higher (each flag matched earns 3 points over the plain CPU match); where the CPU lacks it,
``cpu-avx2`` is not compatible and ``native-cpu`` runs. The files come from the test Hub
(``hub_server``) under two repos, so a node fetches only its engine's files.
"""

from __future__ import annotations

from pathlib import Path

import yaml

GGUF_REPO = "test-org/SmolLM2-135M-Instruct-GGUF"
HF_REPO = "test-org/SmolLM2-135M-Instruct"
GGUF_NAME = "smollm2-135m-instruct-q4_1.gguf"
HF_FILES = (
    "model.safetensors",
    "config.json",
    "generation_config.json",
    "tokenizer.json",
    "tokenizer_config.json",
    "chat_template.jinja",
)
AVX2_FLAGS = ["avx2", "fma", "f16c"]


def hub_repos(gguf: Path, hf_dir: Path) -> dict[str, dict[str, Path | bytes]]:
    """The two repos the package's options name, with the provisioned files (the small ones
    as bytes: the test Hub gives those their git blob id, which the pull verifies)."""
    readme = b"# SmolLM2-135M-Instruct\n"
    hf: dict[str, Path | bytes] = {n: (hf_dir / n).read_bytes() for n in HF_FILES[1:]}
    return {
        GGUF_REPO: {GGUF_NAME: gguf, "README.md": readme},
        HF_REPO: {HF_FILES[0]: hf_dir / HF_FILES[0], **hf, "README.md": readme},
    }


def _engine(name: str, runtime: str, option: str, devices: dict, config: dict) -> dict:
    return {
        "name": name,
        "summary": f"{runtime} on the CPU",
        "description": f"{runtime} running SmolLM2's {option} files on the CPU.",
        "vendor": "famous",
        "runtime": runtime,
        "devices": devices,
        "model-options": [option],
        "default-model-option": option,
        "configuration": config,
    }


def write_package(home: Path, name: str) -> Path:
    """The package as a user package of ``home`` (``FAMOUS_HOME/packages/NAME``)."""
    folder = home / "packages" / name
    model = {
        "name": name,
        "description": "SmolLM2-135M-Instruct: llama.cpp where the CPU has AVX2, else PyTorch.",
        "license": "apache-2.0",
        "capabilities": ["text"],
        "shape": {
            "parameters": 134_515_008,
            "layers": 30,
            "kv-heads": 3,
            "head-dim": 64,
            "context": 2048,
            "architecture": "llama",
        },
        "options": {
            "q4_1": {
                "repo": GGUF_REPO,
                "format": "gguf",
                "quantization": "Q4_1",
                "files": ["*q4_1.gguf"],
                "size": "100MB",
            },
            "f32": {
                "repo": HF_REPO,
                "format": "safetensors",
                "quantization": "f32",
                "files": list(HF_FILES),
                "size": "540MB",
            },
        },
    }
    amd64 = {"type": "cpu", "architecture": "amd64"}
    engines = [
        _engine(
            "cpu-avx2",
            "llamacpp",
            "q4_1",
            {"allof": [{**amd64, "flags": AVX2_FLAGS}]},
            {"context-size": 2048},
        ),
        _engine(
            "native-cpu",
            "famous-native",
            "f32",
            {"anyof": [amd64]},
            {"context-size": 2048, "dtype": "float32"},
        ),
    ]
    (folder / "engines").mkdir(parents=True, exist_ok=True)
    (folder / "model.yaml").write_text(yaml.safe_dump(model, sort_keys=False))
    for engine in engines:
        (folder / "engines" / engine["name"]).mkdir(exist_ok=True)
        (folder / "engines" / engine["name"] / "engine.yaml").write_text(yaml.safe_dump(engine))
    return folder
