"""GPU engines through famous: decode tokens/s via the gateway ÷ the same engine called directly.

    python benchmarks/gpu_engines.py [--engines vllm llamacpp-gpu] [--streams 1 8]

For each GPU engine it writes a random-weight Llama itself (nothing is downloaded: a HF
safetensors checkpoint for vLLM, an f32 GGUF for llama.cpp with every layer offloaded),
starts ``famous serve``, registers and loads the model with that runtime, then streams the
same chat requests alternately to the gateway and to the engine's own port (from
``/famous/api/ps``) at each concurrency, using the gateway benchmark's measurement
(``benchmarks/gateway_overhead.py``). End-of-sequence is held down in both models, so every
stream runs to ``--max-tokens``. On a machine without a GPU it prints why and exits 0.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
for extra in (REPO / "src", REPO / "tests" / "serving", REPO / "tests" / "engines", REPO):
    sys.path.insert(0, str(extra))

from benchmarks.gateway_overhead import measure  # noqa: E402
from benchmarks.gateway_process import serving  # noqa: E402

from famous.runtimes import RuntimeNotInstalled, get_runtime  # noqa: E402


def find_gpu() -> str | None:
    """A short description of the GPU this machine has, or None."""
    smi = shutil.which("nvidia-smi")
    if smi:
        out = subprocess.run([smi, "-L"], capture_output=True, text=True, check=False)
        if out.returncode == 0 and out.stdout.strip():
            return out.stdout.strip().splitlines()[0]
    if Path("/dev/kfd").exists():
        return "AMD GPU (/dev/kfd)"
    return None


def build_model(engine: str, folder: Path, args: argparse.Namespace) -> tuple[Path, dict]:
    """The model file or folder for ``engine`` and the engine configuration to serve it."""
    streams = max(args.streams)
    if engine == "vllm":
        from tiny_hf import write_llama

        path = write_llama(
            folder / "bench-hf",
            hidden_size=args.hidden,
            layers=args.layers,
            heads=16,
            kv_heads=8,
            intermediate_size=args.hidden * 3,
            context=4096,
            hold_down_specials=True,
        )
        return path, {
            "max-model-len": 2048,
            "gpu-memory-utilization": args.gpu_memory,
            "max-num-seqs": max(streams, 8),
        }
    from tiny_gguf import write_llama as write_gguf

    path = write_gguf(
        folder / "bench.gguf",
        n_embd=args.hidden,
        n_layer=args.layers,
        n_head=16,
        n_head_kv=8,
        n_ff=args.hidden * 3,
        context=4096,
    )
    return path, {"ctx-size": 2048 * streams, "n-gpu-layers": -1, "parallel": streams}


def check_engine(engine: str) -> str | None:
    """Why ``engine`` cannot run here, or None."""
    runtime = "vllm" if engine == "vllm" else "llamacpp"
    try:
        get_runtime(runtime, {"server": "auto"} if runtime == "llamacpp" else {}).check_installed()
    except RuntimeNotInstalled as exc:
        return str(exc)
    if engine == "llamacpp-gpu":
        from famous.runtimes.llamacpp import find_llama_server

        if find_llama_server() is None:
            import llama_cpp

            if not llama_cpp.llama_supports_gpu_offload():
                return (
                    "llama-cpp-python here is a CPU build; install a GPU one, e.g. "
                    "CMAKE_ARGS='-DGGML_CUDA=on' pip install --force-reinstall "
                    "'llama-cpp-python[server]' (ROCm: -DGGML_HIP=on)"
                )
    return None


def run_engine(engine: str, args: argparse.Namespace, tmp: Path) -> list[dict[str, Any]]:
    model, configuration = build_model(engine, tmp, args)
    runtime = "vllm" if engine == "vllm" else "llamacpp"
    with serving(tmp / engine, model, configuration, runtime=runtime, load_timeout=900) as gw:
        dep = gw.deployment
        print(f"{engine}: {dep['server']} pid {dep['pid']} at {dep['url']}; model {model.name}")
        results = []
        for streams in args.streams:
            res = asyncio.run(measure(gw.url, dep["url"], streams, args.rounds, args.max_tokens))
            res["engine"] = engine
            results.append(res)
            print(
                f"  {streams:>2} stream(s): gateway {res['gateway_tok_s']:9.1f} tok/s, direct "
                f"{res['direct_tok_s']:9.1f} tok/s, ratio {res['ratio']:.3f}; TTFT added "
                f"{res['ttft_added_ms']:+.1f} ms"
            )
        return results


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--engines", nargs="+", default=["vllm", "llamacpp-gpu"])
    parser.add_argument("--streams", type=int, nargs="+", default=[1, 8])
    parser.add_argument("--rounds", type=int, default=4)
    parser.add_argument("--max-tokens", type=int, default=128)
    parser.add_argument("--hidden", type=int, default=1024)
    parser.add_argument("--layers", type=int, default=12)
    parser.add_argument("--gpu-memory", type=float, default=0.5, help="vLLM's share of VRAM")
    parser.add_argument("--json", type=Path, help="also write the results here")
    args = parser.parse_args()

    gpu = find_gpu()
    if gpu is None:
        print("SKIP: no GPU on this machine (no nvidia-smi -L, no /dev/kfd); run this on a GPU")
        return 0
    print(f"GPU: {gpu}")
    results: list[dict[str, Any]] = []
    with tempfile.TemporaryDirectory(prefix="famous-gpu-bench-") as tmp:
        for engine in args.engines:
            reason = check_engine(engine)
            if reason:
                print(f"SKIP {engine}: {reason}")
                continue
            results += run_engine(engine, args, Path(tmp))
    if args.json:
        args.json.write_text(json.dumps(results, indent=2))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
