"""What a Ray node offers famous, read from famous's hardware detector, and what a replica asks.

Ray places actors by resources. famous names the accelerators the detector found as custom
resources (``famous_gpu_nvidia: 2``, ``famous_vram_gib_nvidia: 48``, ``famous_cpu_amd64: 1``),
gives the node's memory as the detector measured it, and marks the node as one that runs
famous (``famous_node``), so a replica lands only where famous and its detector are, and only
where the model's memory estimate fits.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

from famous.hardware.report import HardwareReport
from famous.serve.ray_serve.scaling import METRICS_INTERVAL_S

#: every node that runs famous offers this many replica slots; each replica takes one
NODE_SLOTS = 64.0
NODE_RESOURCE = "famous_node"

VENDORS = {0x10DE: "nvidia", 0x1002: "amd", 0x8086: "intel", 0x106B: "apple", 0x5143: "qualcomm"}


def _vendor(vendor_id: int) -> str:
    return VENDORS.get(vendor_id, f"{vendor_id:04x}")


def _name(*parts: str) -> str:
    """A resource name Ray and a shell both take as it is."""
    return re.sub(r"[^a-z0-9_]+", "_", "_".join(parts).lower())


def node_resources(report: HardwareReport) -> dict[str, float]:
    """The custom resources of a node with ``report``: one per CPU architecture, a count and
    the VRAM (whole GiB) per GPU vendor, a count per NPU vendor, and the replica slots."""
    resources: dict[str, float] = {NODE_RESOURCE: NODE_SLOTS}
    resources[_name("famous_cpu", report.architecture)] = 1.0
    for device in report.devices:
        if device.kind not in ("gpu", "npu"):
            continue
        vendor = _vendor(device.vendor_id)
        key = _name("famous", device.kind, vendor)
        resources[key] = resources.get(key, 0.0) + 1.0
        vram = device.gpu.vram_bytes if device.gpu is not None else None
        if device.kind == "gpu" and vram and not device.gpu.unified_memory:
            vkey = _name("famous_vram_gib", vendor)
            resources[vkey] = resources.get(vkey, 0.0) + float(vram // 1024**3)
    return resources


def node_memory(report: HardwareReport) -> int:
    """The memory Ray may hand out on this node: what the detector saw available."""
    return int(report.memory.available_bytes or report.memory.total_bytes)


#: what a placed replica takes of its node's placement resource (``--ray-place``): a node
#: offering ``rack_a: 1`` holds up to 100 of them, so the resource marks nodes, not counts
PLACE_AMOUNT = 0.01
_RESOURCE_NAME = re.compile(r"^[A-Za-z][A-Za-z0-9_]{0,63}$")


def placement_options(items: list[str]) -> dict[str, list[str]]:
    """``--ray-place MODEL=RESOURCE`` options (repeatable; a model may need several): the
    custom resources each model's replicas ask for, so Ray puts them only on nodes started
    with them (``famous ray-start --resources '{"RESOURCE": 1}'``)."""
    from famous.errors import InvalidInput

    placed: dict[str, list[str]] = {}
    for item in items:
        model, sep, resource = item.rpartition("=")
        if not sep or not model or not resource:
            raise InvalidInput(f"--ray-place expects MODEL=RESOURCE, got {item!r}")
        if not _RESOURCE_NAME.fullmatch(resource) or resource.startswith("famous_"):
            raise InvalidInput(
                f"--ray-place {item!r}: the resource must be a letter then letters, digits or "
                "_ (64 at most), and not one of famous's own (famous_*)"
            )
        placed.setdefault(model, []).append(resource)
    return placed


def replica_options(
    memory_bytes: int | None, num_cpus: float, placed: list[str] | None = None
) -> dict[str, Any]:
    """A replica's ``ray_actor_options``: a famous node's slot, its CPUs, the model's memory
    estimate, so Ray places it only on a node where the model fits, and a little of each
    resource the model is placed by (``--ray-place``)."""
    resources = {NODE_RESOURCE: 1.0, **dict.fromkeys(placed or [], PLACE_AMOUNT)}
    options: dict[str, Any] = {"num_cpus": num_cpus, "resources": resources}
    if memory_bytes:
        options["memory"] = int(memory_bytes)
    return options


#: Ray Serve's high-throughput mode (Ray >= 2.56): HAProxy instead of the Python proxy in
#: front of the replicas, and replicas answering it directly. Every token of a stream crosses
#: that hop; benchmarks/ray_serve.py measured the Python proxy's cost at ~2.7 ms of CPU per
#: token and HAProxy's at ~0.1 ms. Nodes started by famous set them unless already set.
#: Replicas and proxies also report their ongoing requests to Serve's autoscaler every
#: second instead of every 10 s: a model scaled to zero starts its replica that much sooner
#: on the first request, and keep-alives shorter than 10 s mean what they say. A replica
#: that goes (scaled down, or its model stopped) stays reachable 5 s instead of 30 for
#: HAProxy to drop it: Serve reloads HAProxy's list at once, and until the drain ends the
#: replica keeps its node's resources, which a new replica of the model may need.
SERVE_ENVIRONMENT = {
    "RAY_SERVE_ENABLE_HA_PROXY": "1",
    "RAY_SERVE_THROUGHPUT_OPTIMIZED": "1",
    "RAY_SERVE_REPLICA_AUTOSCALING_METRIC_PUSH_INTERVAL_S": f"{METRICS_INTERVAL_S:g}",
    "RAY_SERVE_HANDLE_AUTOSCALING_METRIC_PUSH_INTERVAL_S": f"{METRICS_INTERVAL_S:g}",
    "RAY_SERVE_DIRECT_INGRESS_MIN_DRAINING_PERIOD_S": "5",
}


def serve_environment(env: dict[str, str]) -> dict[str, str]:
    """``env`` with Ray Serve's high-throughput settings where it does not choose its own,
    and with Ray's token authentication on where a token is at hand (``auth_environment``)."""
    return {**SERVE_ENVIRONMENT, **auth_environment(env), **env}


def auth_environment(env: dict[str, str]) -> dict[str, str]:
    """``RAY_AUTH_MODE=token`` when ``env`` leaves the mode to famous and a token is at hand
    (``RAY_AUTH_TOKEN``, the file ``RAY_AUTH_TOKEN_PATH`` names, or ``~/.ray/auth_token``).

    Ray enables token authentication by itself only for a cluster it finds on this machine;
    a node joining, or a gateway connecting to, an explicit address must ask for it. With it
    on, nothing without the cluster's token can run code on the cluster."""
    if env.get("RAY_AUTH_MODE"):
        return {}
    path = Path(env.get("RAY_AUTH_TOKEN_PATH") or Path.home() / ".ray" / "auth_token")
    if env.get("RAY_AUTH_TOKEN") or path.is_file():
        return {"RAY_AUTH_MODE": "token"}
    return {}


def ray_start_command(
    report: HardwareReport, extra: dict[str, float] | None = None, head: bool = False
) -> list[str]:
    """``ray start`` for this node with the detector's resources (``extra`` added to them)."""
    import json

    resources = {**node_resources(report), **(extra or {})}
    argv = ["ray", "start", "--head"] if head else ["ray", "start"]
    argv += ["--resources", json.dumps(resources, sort_keys=True)]
    argv += ["--memory", str(node_memory(report))]
    return argv
