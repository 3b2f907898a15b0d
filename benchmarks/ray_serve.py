"""What does Ray Serve cost? Decode tokens/s through ``famous serve --ray`` ÷ ``famous serve``.

One command: ``python benchmarks/ray_serve.py``. It starts a one-node Ray cluster on
127.0.0.1 (``famous ray-start --head``, one CPU, a 100 MB object store), then two gateways
on the same random-weight llama GGUF and llama-server: one starting the engine itself, one
deploying it on the cluster (the request goes gateway → Serve's proxy → the replica → its
engine). It streams the same chat requests alternately through each, at 1 stream (and more
with ``--streams``), and prints the throughput ratio (goal >= 0.95), the time to first token
Ray adds, and the memory of the Ray node's own processes.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import statistics
import sys
import tempfile
from collections.abc import Callable
from pathlib import Path

import httpx

REPO = Path(__file__).resolve().parents[1]
for folder in ("tests/serving", "tests/cluster", "tests", "benchmarks", "src"):
    sys.path.insert(0, str(REPO / folder))

from ray_harness import RayNode, launch_node, wait_started  # noqa: E402
from tiny_gguf import write_llama  # noqa: E402

from famous.runtimes.base import free_port, physical_cores  # noqa: E402
from gateway_overhead import one_round  # noqa: E402
from gateway_process import serving  # noqa: E402
from provision import llama_server  # noqa: E402


def cpu_by_process(node: RayNode, gateway_pid: int) -> dict[str, float]:
    """CPU seconds so far of the Ray gateway and of each kind of process of the node."""
    import psutil

    procs = [psutil.Process(gateway_pid), *node.tree()]
    seconds: dict[str, float] = {}
    for proc in procs:
        try:
            name = "gateway" if proc.pid == gateway_pid else proc.name()
            if name.startswith("ray::"):  # ray::ServeReplica:APP:DEPLOYMENT, ...
                name = proc.cmdline()[0].split(":")[2] if proc.cmdline() else name
            times = proc.cpu_times()
        except (psutil.Error, IndexError):
            continue
        seconds[name] = seconds.get(name, 0.0) + times.user + times.system
    return seconds


async def measure(
    local: str, ray: str, streams: int, rounds: int, max_tokens: int, spent: Callable[[], dict]
) -> dict:
    cpu: dict[str, float] = {}
    tokens = 0
    async with httpx.AsyncClient(timeout=None, trust_env=False) as client:
        for url in (local, ray):  # warm both paths
            await one_round(client, url, streams, 8, f"warm {url}")
        tps: dict[str, list[float]] = {"local": [], "ray": []}
        ttft: dict[str, list[float]] = {"local": [], "ray": []}
        for r in range(rounds):
            order = [("local", local), ("ray", ray)]
            for label, url in order if r % 2 == 0 else order[::-1]:
                before = spent()
                rate, firsts, events = await one_round(
                    client, url, streams, max_tokens, f"{label} {r}"
                )
                if label == "ray":
                    for name, seconds in spent().items():
                        cpu[name] = cpu.get(name, 0.0) + seconds - before.get(name, 0.0)
                    tokens += events
                tps[label].append(rate)
                ttft[label].extend(firsts)
    ratios = [g / d for g, d in zip(tps["ray"], tps["local"], strict=True)]
    return {
        "streams": streams,
        "ray_tok_s": statistics.median(tps["ray"]),
        "local_tok_s": statistics.median(tps["local"]),
        "ratio": statistics.median(ratios),
        "ttft_added_ms": (statistics.median(ttft["ray"]) - statistics.median(ttft["local"])) * 1000,
        "cpu_us_per_token": {k: round(v / max(tokens, 1) * 1e6) for k, v in cpu.items() if v},
    }


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=8)
    parser.add_argument("--max-tokens", type=int, default=64)
    parser.add_argument("--streams", type=int, nargs="+", default=[1])
    parser.add_argument("--threads", type=int, default=max(1, physical_cores() - 1))
    parser.add_argument("--json", type=Path, help="also write the results here")
    args = parser.parse_args()

    with tempfile.TemporaryDirectory(prefix="famous-ray-bench-") as tmp:
        root = Path(tmp)
        model = write_llama(
            root / "bench.gguf", n_embd=512, n_layer=8, n_head=8, n_head_kv=8, n_ff=1408
        )
        configuration = {"ctx-size": 2048, "server": "llama-server", "threads": args.threads}
        configuration["parallel"] = max(args.streams)
        env = {**os.environ, "FAMOUS_LLAMA_SERVER": str(llama_server())}
        env["PYTHONPATH"] = str(REPO / "src") + os.pathsep + env.get("PYTHONPATH", "")
        head, address = launch_node("ray-head", root, env, {})
        results: list[dict] = []
        try:
            wait_started(head)
            ray_args = ("--ray", address, "--ray-port", str(free_port()))
            with (
                serving(root / "local", model, configuration, env=env) as local,
                serving(root / "ray", model, configuration, serve_args=ray_args, env=env) as ray,
            ):
                node_mib = head.memory_bytes() / 2**20
                print(
                    f"llama 8 x 512 f32 on llama-server, {args.threads} thread(s), "
                    f"{os.cpu_count()} CPUs; Ray node (its processes, the replica and its "
                    f"engine): {node_mib:.0f} MiB RSS"
                )
                for streams in args.streams:
                    res = asyncio.run(
                        measure(
                            local.url,
                            ray.url,
                            streams,
                            args.rounds,
                            args.max_tokens,
                            lambda: cpu_by_process(head, ray.pid),
                        )
                    )
                    res["ray_node_mib"] = round(node_mib)
                    results.append(res)
                    print(summary(res))
        finally:
            head.stop()
    if args.json:
        args.json.write_text(json.dumps(results, indent=2))
    return 0


def summary(res: dict) -> str:
    return (
        f"{res['streams']:>2} stream(s): ray {res['ray_tok_s']:.1f} tok/s, local "
        f"{res['local_tok_s']:.1f} tok/s, ratio {res['ratio']:.3f} (goal >= 0.95); TTFT "
        f"added {res['ttft_added_ms']:+.1f} ms; CPU per token on the Ray path (us): "
        f"{res['cpu_us_per_token']}"
    )


if __name__ == "__main__":
    raise SystemExit(main())
