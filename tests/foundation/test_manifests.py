"""Manifests: every built-in package loads; every kind of broken manifest is named precisely."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from famous.manifests.errors import ManifestError, PackageNotFound
from famous.manifests.loader import (
    builtin_package_names,
    builtin_packages_dir,
    find_package,
    load_package,
)

GOOD_ENGINE = """\
name: {name}
summary: llama.cpp on the CPU
description: A test engine.
vendor: famous
runtime: llamacpp
devices:
  allof:
    - type: cpu
      architecture: amd64
model-options: [q4]
default-model-option: q4
"""

GOOD_MODEL = """\
name: {name}
description: A test model.
license: mit
capabilities: [text]
shape:
  parameters: 1000000
  layers: 2
  kv-heads: 2
  head-dim: 16
  context: 256
options:
  q4:
    repo: test/tiny-GGUF
    format: gguf
    quantization: Q4_0
    files: ["*q4_0.gguf"]
    size: 1MB
"""


def write_package(
    root: Path,
    name: str = "tiny",
    engine: str | None = None,
    model: str | None = None,
    engine_name: str = "cpu",
) -> Path:
    pkg = root / name
    (pkg / "engines" / engine_name).mkdir(parents=True)
    (pkg / "model.yaml").write_text(model or GOOD_MODEL.format(name=name))
    (pkg / "engines" / engine_name / "engine.yaml").write_text(
        engine or GOOD_ENGINE.format(name=engine_name)
    )
    return pkg


def problems(pkg: Path) -> list[str]:
    with pytest.raises(ManifestError) as info:
        load_package(pkg)
    return [str(p) for p in info.value.problems]


def test_every_builtin_package_loads() -> None:
    names = builtin_package_names()
    assert len(names) >= 6
    packages = [find_package(n) for n in names]
    assert any("embedding" in p.model.capabilities for p in packages)
    engines = {e for p in packages for e in p.engines}
    # The engines a real deployment offers (see the foundation issue).
    assert {
        "cpu",
        "cpu-avx512",
        "ampere",
        "cuda",
        "vllm-cuda",
        "rocm",
        "intel-gpu",
        "mlx",
    } <= engines
    for p in packages:
        for engine in p.engines.values():
            assert len(engine.summary) <= 56
            for option in engine.model_options:
                assert option in p.model.options


def test_a_good_package_loads(tmp_path: Path) -> None:
    pkg = load_package(write_package(tmp_path))
    assert pkg.name == "tiny" and list(pkg.engines) == ["cpu"]
    assert pkg.option("q4").size == 1_000_000


@pytest.mark.parametrize(
    ("old", "new", "expected"),
    [
        (
            "vendor: famous",
            "vendor: famous\nvendr: typo",
            "engine.yaml:5: vendr: unknown key 'vendr'",
        ),
        (
            "      architecture: amd64",
            "      architecture: amd64\n      flgs: [avx2]",
            "engine.yaml:10: devices.allof[0].flgs: unknown key 'flgs'",
        ),
        (
            "      architecture: amd64",
            "      architecture: sparc",
            "engine.yaml:9: devices.allof[0].architecture:",
        ),
        (
            "    - type: cpu\n      architecture: amd64",
            "    - type: gpu\n      vendor-id: 10zz",
            "engine.yaml:9: devices.allof[0].vendor-id: "
            "expected a hex id such as 0x10de or 10de, got '10zz'",
        ),
        (
            "    - type: cpu\n      architecture: amd64",
            "    - type: gpu\n      compute-capability: ['>>7']",
            "devices.allof[0].compute-capability: '>>7' is not a version specifier",
        ),
        (
            "devices:\n  allof:\n    - type: cpu\n      architecture: amd64\n",
            "devices: {}\n",
            "engine.yaml:6: devices: devices needs at least one device under allof or anyof",
        ),
        ("name: cpu", "name: gpu", "engine.yaml:1: name: 'gpu' does not match its folder 'cpu'"),
        (
            "default-model-option: q4",
            "default-model-option: q8",
            "default-model-option 'q8' is not one of model-options ['q4']",
        ),
        (
            "model-options: [q4]",
            "model-options: [q4, q9]\n",
            "model-options[1]: 'q9' is not an option of",
        ),
        (
            "summary: llama.cpp on the CPU",
            "summary: " + "x" * 57,
            "engine.yaml:2: summary: String should have at most 56 characters",
        ),
        (
            "runtime: llamacpp",
            "runtime: [llamacpp]",
            "engine.yaml:5: runtime: Input should be a valid string",
        ),
        (
            "vendor: famous",
            "vendor: famous\nvendor: again",
            "engine.yaml:5: vendor: duplicate key 'vendor'",
        ),
        ("vendor: famous", "vendor: famous: [", "engine.yaml:4: invalid YAML"),
    ],
)
def test_broken_engine_manifest_names_file_line_and_field(
    tmp_path: Path, old: str, new: str, expected: str
) -> None:
    text = GOOD_ENGINE.format(name="cpu")
    assert old in text
    pkg = write_package(tmp_path, engine=text.replace(old, new))
    found = problems(pkg)
    assert any(expected in p for p in found), found
    assert all(str(pkg) in p for p in found)


def test_hex_ids_are_hex_even_without_0x(tmp_path: Path) -> None:
    text = GOOD_ENGINE.format(name="cpu").replace(
        "    - type: cpu\n      architecture: amd64", "    - type: gpu\n      vendor-id: 1002"
    )
    pkg = load_package(write_package(tmp_path, engine=text))
    assert pkg.engines["cpu"].devices.allof[0].vendor_id == 0x1002


def test_broken_model_manifest(tmp_path: Path) -> None:
    model = (
        GOOD_MODEL.format(name="tiny")
        .replace("size: 1MB", "size: lots")
        .replace("format: gguf", "format: pickle")
    )
    found = problems(write_package(tmp_path, model=model))
    assert any("model.yaml:14: options.q4.format:" in p for p in found), found
    assert any(
        "model.yaml:17: options.q4.size: expected a size such as 4GiB" in p for p in found
    ), found


def test_every_problem_is_reported_at_once(tmp_path: Path) -> None:
    engine = GOOD_ENGINE.format(name="cpu").replace("vendor: famous", "vendr: famous")
    model = GOOD_MODEL.format(name="tiny").replace("license: mit", "licence: mit")
    found = problems(write_package(tmp_path, engine=engine, model=model))
    assert len([p for p in found if "unknown key" in p]) == 2
    assert any("vendor: required field is missing" in p for p in found)


def test_unknown_package_lists_known_ones() -> None:
    with pytest.raises(PackageNotFound) as info:
        find_package("no-such-model")
    assert "qwen2.5-0.5b-instruct" in str(info.value)
    with pytest.raises(PackageNotFound):
        find_package("../../etc")


def test_builtin_package_copied_elsewhere_still_loads(tmp_path: Path) -> None:
    src = builtin_packages_dir() / "qwen2.5-0.5b-instruct"
    shutil.copytree(src, tmp_path / "qwen2.5-0.5b-instruct")
    assert find_package(str(tmp_path / "qwen2.5-0.5b-instruct")).name == "qwen2.5-0.5b-instruct"


def test_native_engine_template_lists_exactly_the_families_genai_reauthors() -> None:
    import yaml

    from famous.genai.models import supported_model_types

    template = yaml.safe_load((builtin_packages_dir() / "_generic" / "native-cpu.yaml").read_text())
    assert sorted(template["model-types"]) == supported_model_types()
