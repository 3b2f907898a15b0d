"""What does Ray Serve cost, and what does a second replica give? Decode tokens/s through
``famous serve --ray`` ÷ ``famous serve``, and with 2 replicas ÷ 1.

One command: ``python benchmarks/ray_serve.py``. It starts a one-node Ray cluster on
127.0.0.1 (``famous ray-start --head``, one CPU, a 100 MB object store) and a gateway on a
random-weight llama GGUF with llama-server starting the engine itself. Phase 1: a gateway
deploying the same model on the cluster with one replica (the request goes gateway → Serve's
proxy → the replica → its engine); the same chat requests stream alternately through each,
at 1 stream (and more with ``--streams``: the throughput ratio, goal >= 0.95, and the time
to first token Ray adds) and at 8 (``--scale-streams``). Phase 2: a Ray gateway with two
replicas, against the same local gateway at 8 streams. It prints the aggregate tok/s of 2
replicas ÷ 1 (raw, and each against the local engine measured beside it, which cancels a
shared machine's drift between the phases), the memory of the Ray head's own processes
(GCS, raylet, agents, Serve's controller and proxy; replicas and engines apart) and the load
average.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import statistics
import sys
import tempfile
import time
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
from gateway_process import RunningGateway, get_json, serving  # noqa: E402
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


def memory_by_role(node: RayNode) -> dict[str, float]:
    """MiB of RSS of the node's processes: Ray's own (GCS, raylet, agents, Serve's controller
    and proxies: the head's footprint), the replicas, and the engines they started."""
    import psutil

    mib = {"ray": 0.0, "replicas": 0.0, "engines": 0.0}
    procs = node.tree()
    replicas = set()
    for proc in procs:
        with contextlib.suppress(psutil.Error):
            if proc.name().startswith("ray::ServeReplica") or "ServeReplica" in proc.cmdline()[0]:
                replicas.add(proc.pid)
    for proc in procs:
        with contextlib.suppress(psutil.Error):
            role = "replicas" if proc.pid in replicas else "ray"
            if proc.ppid() in replicas:
                role = "engines"
            mib[role] += proc.memory_info().rss / 2**20
    return {k: round(v) for k, v in mib.items()}


def wait_replicas(gateway: RunningGateway, count: int, timeout: float = 300) -> None:
    """Until the gateway's model has ``count`` live replicas (each with its engine)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        deployments = get_json(gateway.url + "/famous/api/ps", gateway.admin)["deployments"]
        if len(deployments[0].get("replicas") or []) >= count:
            return
        time.sleep(0.5)
    raise SystemExit(f"the model did not reach {count} replicas in {timeout:.0f} s")


def run(args: argparse.Namespace, root: Path, head: RayNode, address: str) -> list[dict]:
    """Phase 1: the local gateway and a Ray gateway with one replica, streamed alternately
    (the overhead at each ``--streams``, and both at ``--scale-streams``); phase 2: a Ray
    gateway with two replicas against the same local gateway at ``--scale-streams``."""
    shape = {"n_embd": 512, "n_layer": 8, "n_head": 8, "n_head_kv": 8, "n_ff": 1408}
    model = write_llama(root / "bench.gguf", **shape)
    configuration = {"ctx-size": 2048, "server": "llama-server", "threads": args.threads}
    configuration["parallel"] = max([*args.streams, args.scale_streams])
    env = bench_environment()
    # two replicas fit the one-CPU node: Ray's CPUs are bookkeeping, each engine's threads
    # are --threads; the same Serve proxy port for both Ray gateways (Serve keeps its first)
    ray_args = ("--ray", address, "--ray-port", str(free_port()), "--ray-cpus", "0.5")
    results: list[dict] = []

    def measured(local: RunningGateway, ray: RunningGateway, streams: int, label: str) -> dict:
        spent = lambda: cpu_by_process(head, ray.pid)  # noqa: E731
        res = asyncio.run(measure(local.url, ray.url, streams, args.rounds, args.max_tokens, spent))
        res["label"] = label
        print(summary(res))
        results.append(res)
        return res

    with serving(root / "local", model, configuration, env=env) as local:
        with serving(root / "ray1", model, configuration, serve_args=ray_args, env=env) as ray:
            memory = memory_by_role(head)
            print(
                f"llama 8 x 512 f32 on llama-server, {args.threads} thread(s) per engine, "
                f"{os.cpu_count()} CPUs, load average {os.getloadavg()[0]:.1f}; Ray node RSS "
                f"(MiB): {memory} (ray: the head's own processes)"
            )
            for streams in args.streams:
                measured(local, ray, streams, "1 replica")
            one = measured(local, ray, args.scale_streams, "1 replica")
        two_args = (*ray_args, "--replicas", "2")
        with serving(root / "ray2", model, configuration, serve_args=two_args, env=env) as ray:
            wait_replicas(ray, 2)
            two = measured(local, ray, args.scale_streams, "2 replicas")
    scaling = {
        "streams": args.scale_streams,
        "replicas_2_over_1": two["ray_tok_s"] / one["ray_tok_s"],
        "vs_local_2_over_1": two["ratio"] / one["ratio"],
        "head_mib": memory["ray"],
        "memory_mib": memory,
        "load_average_end": os.getloadavg()[0],
    }
    print(
        f"{args.scale_streams} streams: 2 replicas {two['ray_tok_s']:.1f} tok/s, 1 replica "
        f"{one['ray_tok_s']:.1f} tok/s: x{scaling['replicas_2_over_1']:.2f} (each against the "
        f"local engine measured beside it: x{scaling['vs_local_2_over_1']:.2f}); Ray head "
        f"{memory['ray']} MiB RSS; load average now {scaling['load_average_end']:.1f}"
    )
    results.append(scaling)
    return results


def bench_environment() -> dict[str, str]:
    env = {**os.environ, "FAMOUS_LLAMA_SERVER": str(llama_server())}
    env["PYTHONPATH"] = str(REPO / "src") + os.pathsep + env.get("PYTHONPATH", "")
    return env


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=8)
    parser.add_argument("--max-tokens", type=int, default=64)
    parser.add_argument("--streams", type=int, nargs="+", default=[1])
    parser.add_argument("--scale-streams", type=int, default=8)
    parser.add_argument("--threads", type=int, default=max(1, physical_cores() - 1))
    parser.add_argument("--json", type=Path, help="also write the results here")
    args = parser.parse_args()

    with tempfile.TemporaryDirectory(prefix="famous-ray-bench-") as tmp:
        root = Path(tmp)
        head, address = launch_node("ray-head", root, bench_environment(), {})
        try:
            wait_started(head)
            results = run(args, root, head, address)
        finally:
            head.stop()
    if args.json:
        args.json.write_text(json.dumps(results, indent=2))
    return 0


def summary(res: dict) -> str:
    return (
        f"{res['streams']:>2} stream(s), {res['label']}: ray {res['ray_tok_s']:.1f} tok/s, local "
        f"{res['local_tok_s']:.1f} tok/s, ratio {res['ratio']:.3f} (goal >= 0.95); TTFT "
        f"added {res['ttft_added_ms']:+.1f} ms; CPU per token on the Ray path (us): "
        f"{res['cpu_us_per_token']}"
    )


if __name__ == "__main__":
    raise SystemExit(main())
