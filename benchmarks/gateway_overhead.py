"""What does the famous gateway cost? Decode tokens/s through it ÷ the same engine called directly.

One command: ``python benchmarks/gateway_overhead.py``. It writes a random-weight llama GGUF
(about 26 M parameters, so decoding runs at a realistic pace rather than at the HTTP
stack's), starts ``famous serve`` with it, loads it, then streams the same chat requests
alternately to the gateway and straight to the engine process the gateway started (its port
comes from ``/famous/api/ps``), at 1 and 8 concurrent streams. It prints the throughput ratio
(goal >= 0.97) and the time-to-first-token the gateway adds (median, ms).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

import httpx

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "tests" / "serving"))
sys.path.insert(0, str(REPO / "benchmarks"))
sys.path.insert(0, str(REPO / "src"))

from tiny_gguf import write_llama  # noqa: E402

from famous.runtimes.base import physical_cores  # noqa: E402
from gateway_process import serving  # noqa: E402


async def one_stream(
    client: httpx.AsyncClient, url: str, prompt: str, max_tokens: int
) -> tuple[float, float, float, int]:
    """(start, first token, last token) times and the number of content events."""
    body = {
        "model": "bench",
        "messages": [{"role": "user", "content": prompt}],
        "max_tokens": max_tokens,
        "temperature": 0,
        "stream": True,
    }
    start = time.perf_counter()
    first = last = 0.0
    tokens = 0
    async with client.stream("POST", url + "/v1/chat/completions", json=body) as resp:
        resp.raise_for_status()
        async for line in resp.aiter_lines():
            if not line.startswith("data: ") or line == "data: [DONE]":
                continue
            event = json.loads(line[6:])
            if event["choices"] and event["choices"][0]["delta"].get("content"):
                now = time.perf_counter()
                first = first or now
                last = now
                tokens += 1
    return start, first, last, tokens


async def one_round(
    client: httpx.AsyncClient, url: str, streams: int, max_tokens: int, salt: str
) -> tuple[float, list[float], int]:
    """Aggregate decode tokens/s of ``streams`` concurrent requests, and their TTFTs.

    Prompts differ per path and round (same length), so neither path reuses the other's
    prompt cache.
    """
    results = await asyncio.gather(
        *(
            one_stream(client, url, f"request {salt} {i}: tell me a story", max_tokens)
            for i in range(streams)
        )
    )
    first = min(r[1] for r in results)
    last = max(r[2] for r in results)
    # Tokens after each stream's first one, over the span from the first to the last token.
    decoded = sum(r[3] - 1 for r in results)
    return decoded / (last - first), [r[1] - r[0] for r in results], sum(r[3] for r in results)


async def measure(
    gateway: str, engine: str, streams: int, rounds: int, max_tokens: int, gateway_pid: int
) -> dict[str, float]:
    import psutil

    gateway_proc = psutil.Process(gateway_pid)
    gateway_cpu = 0.0
    relayed = 0
    limits = httpx.Limits(max_connections=64, max_keepalive_connections=64)
    async with httpx.AsyncClient(timeout=None, limits=limits, trust_env=False) as client:
        for url in (gateway, engine):  # warm both paths (connections, prompt cache)
            await one_round(client, url, streams, 8, f"warm {url}")
        tps: dict[str, list[float]] = {"gateway": [], "direct": []}
        ttft: dict[str, list[float]] = {"gateway": [], "direct": []}
        for r in range(rounds):
            # Alternate which path goes first so drift on a shared machine cancels out.
            order = [("gateway", gateway), ("direct", engine)]
            for label, url in order if r % 2 == 0 else order[::-1]:
                salt = f"{label[0]} {r}"
                cpu = sum(gateway_proc.cpu_times()[:2])
                rate, firsts, events = await one_round(client, url, streams, max_tokens, salt)
                if label == "gateway":
                    gateway_cpu += sum(gateway_proc.cpu_times()[:2]) - cpu
                    relayed += events
                tps[label].append(rate)
                ttft[label].extend(firsts)
    gw, direct = statistics.median(tps["gateway"]), statistics.median(tps["direct"])
    ratios = [g / d for g, d in zip(tps["gateway"], tps["direct"], strict=True)]
    return {
        "streams": streams,
        "gateway_tok_s": gw,
        "direct_tok_s": direct,
        "ratio": statistics.median(ratios),
        "ttft_gateway_ms": statistics.median(ttft["gateway"]) * 1000,
        "ttft_direct_ms": statistics.median(ttft["direct"]) * 1000,
        "ttft_added_ms": (statistics.median(ttft["gateway"]) - statistics.median(ttft["direct"]))
        * 1000,
        "gateway_cpu_us_per_token": gateway_cpu / max(relayed, 1) * 1e6,
    }


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=10, help="alternating rounds per setting")
    parser.add_argument("--max-tokens", type=int, default=64)
    parser.add_argument("--streams", type=int, nargs="+", default=[1, 8])
    parser.add_argument(
        "--server",
        choices=["auto", "llama-cpp-python", "llama-server"],
        default="auto",
        help="which llama.cpp server the engine runs (auto: llama-server when installed)",
    )
    parser.add_argument(
        "--threads",
        type=int,
        default=max(1, physical_cores() - 1),
        help="engine decode threads (default: physical cores - 1, leaving a core to the "
        "client and the gateway, so the run compares the two paths rather than CPU starvation)",
    )
    parser.add_argument("--layers", type=int, default=8)
    parser.add_argument("--embd", type=int, default=512)
    parser.add_argument("--json", type=Path, help="also write the results here")
    args = parser.parse_args()

    with tempfile.TemporaryDirectory(prefix="famous-bench-") as tmp:
        model = write_llama(
            Path(tmp) / "bench.gguf",
            n_embd=args.embd,
            n_layer=args.layers,
            n_head=8,
            n_head_kv=8,
            n_ff=int(args.embd * 2.75),
            context=2048,
        )
        configuration: dict[str, object] = {"ctx-size": 2048}
        if args.server != "auto":
            configuration["server"] = args.server
        if args.threads:
            configuration["threads"] = args.threads
        if args.server != "llama-cpp-python":
            configuration["parallel"] = max(args.streams)
        with serving(Path(tmp), model, configuration) as running:
            gateway, dep = running.url, running.deployment
            engine = dep["url"]
            print(
                f"model: llama {args.layers} layers x {args.embd} "
                f"({model.stat().st_size / 1e6:.0f} MB f32); engine: {dep['server']} "
                f"pid {dep['pid']}, {args.threads} thread(s); {os.cpu_count()} CPUs; "
                f"{args.rounds} alternating rounds "
                f"of {args.max_tokens} tokens per stream"
            )
            results = []
            for streams in args.streams:
                res = asyncio.run(
                    measure(gateway, engine, streams, args.rounds, args.max_tokens, running.pid)
                )
                res["server"] = dep["server"]
                results.append(res)
                print(
                    f"{streams:>2} stream(s): gateway {res['gateway_tok_s']:8.1f} tok/s, "
                    f"direct {res['direct_tok_s']:8.1f} tok/s, ratio {res['ratio']:.3f} "
                    f"(goal >= 0.97); TTFT gateway {res['ttft_gateway_ms']:.1f} ms, direct "
                    f"{res['ttft_direct_ms']:.1f} ms, added {res['ttft_added_ms']:+.1f} ms; "
                    f"gateway CPU {res['gateway_cpu_us_per_token']:.0f} us/token"
                )
            if args.json:
                args.json.write_text(json.dumps(results, indent=2))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
