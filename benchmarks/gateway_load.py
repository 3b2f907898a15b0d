"""Does the gateway stay responsive under load? 32 streams for 60 s, /health polled meanwhile.

One command: ``python benchmarks/gateway_load.py``. It writes the tiny random llama GGUF,
starts ``famous serve`` with llama.cpp behind it (one slot per stream), then keeps
``--streams`` chat streams going for ``--seconds`` (each stream asks again as soon as its
answer ends) while polling ``/health`` every 50 ms. It prints the errors (goal: 0), the
streamed tokens/s, and /health's latency under load beside its latency measured idle in
the same run (goal: p99 < 100 ms under load).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import statistics
import sys
import tempfile
import time
from dataclasses import asdict, dataclass
from pathlib import Path

import httpx

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "tests" / "serving"))
sys.path.insert(0, str(REPO / "benchmarks"))

from tiny_gguf import write_llama  # noqa: E402

from famous.runtimes.base import physical_cores  # noqa: E402
from gateway_process import serving  # noqa: E402

HEALTH_EVERY = 0.05
_ERROR_EVENT = b'data: {"error"'


@dataclass
class LoadResult:
    streams: int
    seconds: float
    answers: int  # streams that ended with [DONE]
    errors: list[str]
    tokens: int
    health_polls: int
    health_p50_ms: float
    health_p99_ms: float
    health_max_ms: float


def _percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(q * (len(ordered) - 1)))]


async def _one_answer(host: str, port: int, request: bytes) -> bytes:
    """One streamed answer, read whole (``Connection: close``)."""
    reader, writer = await asyncio.open_connection(host, port)
    try:
        writer.write(request)
        await writer.drain()
        return await reader.read(-1)
    finally:
        writer.close()


async def _stream_until(url: str, i: int, deadline: float, result: LoadResult) -> None:
    """Ask again and again until ``deadline``. The client reads raw bytes and counts events
    instead of parsing them: on a 2-core machine a heavier client would take the CPU the
    gateway is being measured on."""
    host, port = url.removeprefix("http://").split(":")
    body = json.dumps(
        {
            "model": "bench",
            "messages": [{"role": "user", "content": f"stream {i}: tell me a story"}],
            "max_tokens": 64,
            "stream": True,
        }
    ).encode()
    request = (
        f"POST /v1/chat/completions HTTP/1.1\r\nHost: {host}:{port}\r\n"
        f"Content-Type: application/json\r\nContent-Length: {len(body)}\r\n"
        "Connection: close\r\n\r\n"
    ).encode() + body
    while time.monotonic() < deadline:
        try:
            answer = await _one_answer(host, int(port), request)
        except OSError as exc:
            result.errors.append(f"{type(exc).__name__}: {exc}")
            continue
        status = answer[9:12]
        if status != b"200":
            result.errors.append(f"HTTP {status.decode()}: {answer[-300:]!r}")
        elif _ERROR_EVENT in answer:
            event = answer[answer.index(_ERROR_EVENT) :][:300]
            result.errors.append(f"error event: {event!r}")
        elif b"data: [DONE]" not in answer[-64:]:  # the last event (then the chunked end)
            result.errors.append(f"a stream ended without [DONE]: {answer[-200:]!r}")
        else:
            result.answers += 1
            result.tokens += answer.count(b'"content":"') - answer.count(b'"content":""')


def health_latencies(url: str, seconds: float) -> list[float]:
    """/health's latency (seconds), polled every HEALTH_EVERY seconds for ``seconds``."""
    latencies = []
    until = time.monotonic() + seconds
    with httpx.Client(timeout=10, trust_env=False) as client:
        while time.monotonic() < until:
            start = time.perf_counter()
            resp = client.get(url + "/health")
            latencies.append(time.perf_counter() - start)
            resp.raise_for_status()
            time.sleep(HEALTH_EVERY)
    return latencies


async def measure_load(url: str, streams: int, seconds: float) -> LoadResult:
    """Keep ``streams`` chat streams on ``url`` going for ``seconds``; poll /health from a
    process of its own, as a monitor would (this one's event loop is busy with the streams)."""
    result = LoadResult(streams, seconds, 0, [], 0, 0, 0.0, 0.0, 0.0)
    monitor = await asyncio.create_subprocess_exec(
        sys.executable, __file__, "--health-monitor", url, str(seconds),
        stdout=asyncio.subprocess.PIPE,
    )  # fmt: skip
    deadline = time.monotonic() + seconds
    await asyncio.gather(*(_stream_until(url, i, deadline, result) for i in range(streams)))
    out, _ = await monitor.communicate()
    if monitor.returncode != 0:
        raise RuntimeError("/health did not answer every poll")
    latencies = json.loads(out)
    result.health_polls = len(latencies)
    result.health_p50_ms = statistics.median(latencies) * 1000
    result.health_p99_ms = _percentile(latencies, 0.99) * 1000
    result.health_max_ms = max(latencies) * 1000
    return result


def main() -> int:
    if sys.argv[1:2] == ["--health-monitor"]:
        print(json.dumps(health_latencies(sys.argv[2], float(sys.argv[3]))))
        return 0
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--streams", type=int, default=32)
    parser.add_argument("--seconds", type=float, default=60)
    parser.add_argument(
        "--server",
        choices=["auto", "llama-cpp-python", "llama-server"],
        default="auto",
        help="the engine's llama.cpp server (auto: llama-server when installed, or named by "
        "FAMOUS_LLAMA_SERVER)",
    )
    parser.add_argument(
        "--threads",
        type=int,
        default=max(1, physical_cores() - 1),
        help="engine threads (default: physical cores - 1, leaving a core to the gateway "
        "and this client, as a machine serving others would be set up)",
    )
    parser.add_argument("--json", type=Path, help="also write the result here")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="famous-load-") as tmp:
        model = write_llama(Path(tmp) / "bench.gguf")
        configuration: dict[str, object] = {"parallel": args.streams, "ctx-size": 8192}
        if args.threads:
            configuration["threads"] = args.threads
        if args.server != "auto":
            configuration["server"] = args.server
        with serving(Path(tmp), model, configuration) as running:
            idle = health_latencies(running.url, 3)
            load = asyncio.run(measure_load(running.url, args.streams, args.seconds))
    idle_p99 = _percentile(idle, 0.99) * 1000
    print(
        f"{load.streams} streams for {load.seconds:g} s: {load.answers} answers, "
        f"{len(load.errors)} errors (goal 0), {load.tokens / load.seconds:.0f} tokens/s streamed"
    )
    print(
        f"/health under load: p50 {load.health_p50_ms:.1f} ms, p99 {load.health_p99_ms:.1f} ms "
        f"(goal < 100), max {load.health_max_ms:.1f} ms over {load.health_polls} polls; idle "
        f"p99 {idle_p99:.1f} ms; p99 loaded / idle {load.health_p99_ms / idle_p99:.1f}x"
    )
    for error in load.errors[:10]:
        print("  error:", error)
    if args.json:
        args.json.write_text(json.dumps({**asdict(load), "idle_p99_ms": idle_p99}, indent=2))
    return 0 if not load.errors else 1


if __name__ == "__main__":
    raise SystemExit(main())
