"""What does each protocol cost? Decode tok/s through OpenAI Responses, Anthropic Messages
and Ollama's chat ÷ through the OpenAI chat route, on the same gateway and engine.

One command: ``python benchmarks/protocols.py``. It starts ``famous serve`` on
``gateway_overhead``'s random-weight llama GGUF (llama-server when one is installed), then
streams the same request through each route in alternating rounds (so drift on a shared
machine cancels out) at 1 and 4 concurrent streams, counting the text pieces each
protocol's stream carries. Goal: every ratio >= 0.97.

It also prints the gateway process's CPU time per streamed piece on each route (what a
translation costs, which the engine then lacks on a machine whose cores it shares), a
figure that the load of other processes disturbs far less than tokens per second.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import statistics
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

import httpx
import psutil

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "benchmarks"))

from gateway_overhead import write_llama  # noqa: E402
from gateway_process import serving  # noqa: E402

PROMPT = "tell me a story about silicon"


def _openai_chat(n: int) -> tuple[str, dict]:
    return "/v1/chat/completions", {
        "messages": [{"role": "user", "content": PROMPT}], "max_tokens": n, "stream": True,
    }  # fmt: skip


def _responses(n: int) -> tuple[str, dict]:
    return "/v1/responses", {
        "input": PROMPT,
        "max_output_tokens": n,
        "stream": True,
        "store": False,
    }


def _anthropic(n: int) -> tuple[str, dict]:
    return "/v1/messages", {
        "messages": [{"role": "user", "content": PROMPT}], "max_tokens": n, "stream": True,
    }  # fmt: skip


def _ollama(n: int) -> tuple[str, dict]:
    return "/api/chat", {
        "messages": [{"role": "user", "content": PROMPT}], "options": {"num_predict": n},
    }  # fmt: skip


def _piece(line: str) -> bool:
    """Whether one line of a stream carries a piece of text, in any of the four protocols."""
    data = line[6:] if line.startswith("data: ") else line
    if not data.startswith("{"):
        return False
    event = json.loads(data)
    choices = event.get("choices")
    if choices:
        return bool(choices[0].get("delta", {}).get("content"))
    if event.get("type") == "response.output_text.delta":
        return bool(event.get("delta"))
    if event.get("type") == "content_block_delta":
        return bool(event.get("delta", {}).get("text"))
    return bool((event.get("message") or {}).get("content")) and not event.get("done")


PROTOCOLS: dict[str, Callable[[int], tuple[str, dict]]] = {
    "openai chat": _openai_chat,
    "responses": _responses,
    "anthropic": _anthropic,
    "ollama": _ollama,
}


async def _stream(
    client: httpx.AsyncClient, url: str, path: str, body: dict
) -> tuple[float, float, int]:
    first = last = 0.0
    pieces = 0
    async with client.stream(
        "POST", url + path, json={**body, "model": "bench", "temperature": 0}
    ) as resp:
        resp.raise_for_status()
        async for line in resp.aiter_lines():
            if line and _piece(line):
                now = time.perf_counter()
                first = first or now
                last = now
                pieces += 1
    return first, last, pieces


def _cpu_seconds(process: psutil.Process) -> float:
    times = process.cpu_times()
    return times.user + times.system


async def _round(
    client: httpx.AsyncClient, url: str, protocol: str, streams: int, n: int
) -> tuple[float, int]:
    """Pieces per second over the round, and the pieces."""
    path, body = PROTOCOLS[protocol](n)
    results = await asyncio.gather(*(_stream(client, url, path, body) for _ in range(streams)))
    first = min(r[0] for r in results)
    last = max(r[1] for r in results)
    pieces = sum(r[2] for r in results)
    return sum(r[2] - 1 for r in results) / (last - first), pieces


async def measure(
    url: str, gateway: psutil.Process, streams: int, rounds: int, n: int
) -> tuple[dict[str, float], dict[str, float]]:
    """The median ratio of each protocol's rate to the chat route's in the same round (and
    the chat route's rate); the gateway's CPU µs per piece on each route."""
    rates: dict[str, list[float]] = {p: [] for p in PROTOCOLS}
    cpu = dict.fromkeys(PROTOCOLS, 0.0)
    pieces = dict.fromkeys(PROTOCOLS, 0)
    limits = httpx.Limits(max_connections=64, max_keepalive_connections=64)
    async with httpx.AsyncClient(timeout=None, limits=limits, trust_env=False) as client:
        for protocol in PROTOCOLS:  # warm every route
            await _round(client, url, protocol, streams, 8)
        order = list(PROTOCOLS)
        for r in range(rounds):
            for protocol in order if r % 2 == 0 else order[::-1]:
                before = _cpu_seconds(gateway)
                rate, count = await _round(client, url, protocol, streams, n)
                cpu[protocol] += _cpu_seconds(gateway) - before
                pieces[protocol] += count
                rates[protocol].append(rate)
    base = rates["openai chat"]
    ratios = {
        p: statistics.median(a / b for a, b in zip(v, base, strict=True))
        for p, v in rates.items()
        if p != "openai chat"
    } | {"openai chat tok/s": statistics.median(base)}
    return ratios, {p: 1e6 * cpu[p] / max(pieces[p], 1) for p in PROTOCOLS}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=6)
    parser.add_argument("--max-tokens", type=int, default=48)
    parser.add_argument("--streams", type=int, nargs="+", default=[1, 4])
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="famous-bench-") as tmp:
        folder = Path(tmp)
        model = write_llama(
            folder / "bench.gguf", n_embd=512, n_layer=8, n_head=8, n_head_kv=8, n_ff=1408,
            context=1024,
        )  # fmt: skip
        with serving(folder, model, {"ctx-size": 1024}) as running:
            print(f"engine: {running.deployment['server']}")
            gateway = psutil.Process(running.pid)
            for streams in args.streams:
                res, cpu = asyncio.run(
                    measure(running.url, gateway, streams, args.rounds, args.max_tokens)
                )
                ratios = ", ".join(
                    f"{p} {v:.3f}" for p, v in res.items() if p != "openai chat tok/s"
                )
                print(
                    f"{streams} stream(s): openai chat {res['openai chat tok/s']:.1f} tok/s; "
                    f"through each protocol ÷ openai chat: {ratios} (goal >= 0.97)"
                )
                costs = ", ".join(f"{p} {us:.0f}" for p, us in cpu.items())
                print(f"  gateway CPU µs per piece (request costs included): {costs}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
