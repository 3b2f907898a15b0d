"""llama-server vs llama_cpp.server behind famous, and famous vs the bare engine, at 1, 8
and 32 concurrent streams.

One command: ``python benchmarks/llamacpp_servers.py``. For each llama.cpp server it starts
``famous serve`` on the same random-weight llama GGUF (``gateway_overhead``'s model), then
streams the same chat requests alternately through the gateway and straight to the engine
the gateway started (the bare engine, same flags). It prints, per concurrency, aggregate
decode tok/s through famous on each server and their ratio (what llama-server's batching
buys), and famous ÷ bare on each (goal >= 0.97). Needs a llama-server (``famous
install-component llama-server``, or ``FAMOUS_LLAMA_SERVER``).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
import tempfile
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "benchmarks"))

from famous.runtimes.base import physical_cores  # noqa: E402
from famous.runtimes.llamacpp import find_llama_server  # noqa: E402
from gateway_overhead import measure, write_llama  # noqa: E402
from gateway_process import serving  # noqa: E402

SERVERS = ("llama-server", "llama-cpp-python")


def run_server(
    folder: Path, model: Path, server: str, streams: list[int], rounds: int, max_tokens: int
) -> list[dict]:
    configuration: dict[str, object] = {
        "ctx-size": 1024,
        "server": server,
        "threads": max(1, physical_cores() - 1),  # a core left to the client and gateway
    }
    if server == "llama-server":
        configuration["parallel"] = max(streams)
    results = []
    with serving(folder / server, model, configuration) as running:
        for n in streams:
            # llama_cpp.server answers one stream after another: fewer rounds at high counts
            tries = rounds if server == "llama-server" or n == 1 else max(2, rounds // 3)
            res = asyncio.run(
                measure(running.url, running.deployment["url"], n, tries, max_tokens, running.pid)
            )
            res["server"] = running.deployment["server"]
            results.append(res)
            print(
                f"{res['server']:>16} {n:>2} stream(s): famous {res['gateway_tok_s']:7.1f} "
                f"tok/s, bare {res['direct_tok_s']:7.1f} tok/s, famous/bare {res['ratio']:.3f}",
                flush=True,
            )
    return results


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=6, help="alternating rounds per setting")
    parser.add_argument("--max-tokens", type=int, default=48)
    parser.add_argument("--streams", type=int, nargs="+", default=[1, 8, 32])
    parser.add_argument("--json", type=Path, help="also write the results here")
    args = parser.parse_args()
    if find_llama_server() is None:
        print("no llama-server: famous install-component llama-server (or FAMOUS_LLAMA_SERVER)")
        return 2
    with tempfile.TemporaryDirectory(prefix="famous-bench-") as tmp:
        folder = Path(tmp)
        model = write_llama(
            folder / "bench.gguf",
            n_embd=512,
            n_layer=8,
            n_head=8,
            n_head_kv=8,
            n_ff=1408,
            context=1024,
        )
        results = {
            server: run_server(folder, model, server, args.streams, args.rounds, args.max_tokens)
            for server in SERVERS
        }
    print(
        "\nstreams  llama-server/llama_cpp.server (famous)  famous/bare: llama-server  "
        "llama_cpp.server"
    )
    for native, python in zip(results["llama-server"], results["llama-cpp-python"], strict=True):
        print(
            f"{native['streams']:>7}  {native['gateway_tok_s'] / python['gateway_tok_s']:>38.2f}"
            f"  {native['ratio']:>24.3f}  {python['ratio']:>16.3f}"
        )
    if args.json:
        args.json.write_text(json.dumps(results, indent=2))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
