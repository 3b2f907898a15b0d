"""What a Ray node offers famous, read from a real machine's capture: what a person reading
its nvidia-smi, clinfo and meminfo files would say it has."""

from __future__ import annotations

import json
import shlex
import subprocess
import sys
from pathlib import Path

from famous.hardware.detector import detect
from famous.hardware.host import Host
from famous.serve.ray_serve.resources import NODE_RESOURCE, node_memory, replica_options

MACHINES = (Path(__file__).resolve().parents[2] / ".." / "shared" / "machines").resolve()
if not MACHINES.is_dir():
    MACHINES = Path("/work/shared/machines")
ROOT = MACHINES / "i5-3570k+arc-a580+gtx1080ti" / "machine-root"


def _meminfo_available(root: Path) -> int:
    for line in (root / "proc" / "meminfo").read_text().splitlines():
        if line.startswith("MemAvailable:"):
            return int(line.split()[1]) * 1024
    raise AssertionError("no MemAvailable in the capture")


def _ray_start(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "famous", "ray-start", "--dry-run", "--root", str(ROOT), *args],
        capture_output=True,
        text=True,
        timeout=60,
    )


def test_ray_start_offers_the_captured_gpus_and_memory() -> None:
    """GTX 1080 Ti (nvidia-smi: 11264 MiB), Arc A580 (clinfo: 7.5 GiB) and the i5's HD 4000
    (shared memory, so no VRAM of its own) on an amd64 CPU."""
    done = _ray_start("--address", "10.0.0.1:6379", "--resources", '{"rack_a": 1}', "--block")
    assert done.returncode == 0, done.stderr
    view, *argv = shlex.split(done.stderr.strip().splitlines()[-1])
    # the node's replicas get the machine view its resources come from
    assert view == f"FAMOUS_HARDWARE_ROOT={ROOT.resolve()}"
    assert argv[:2] == ["ray", "start"]
    resources = json.loads(argv[argv.index("--resources") + 1])
    assert resources == {
        "famous_cpu_amd64": 1.0,
        "famous_gpu_nvidia": 1.0,
        "famous_vram_gib_nvidia": 11.0,
        "famous_gpu_intel": 2.0,
        "famous_vram_gib_intel": 7.0,
        NODE_RESOURCE: 64.0,
        "rack_a": 1.0,
    }
    assert int(argv[argv.index("--memory") + 1]) == _meminfo_available(ROOT)
    assert argv[argv.index("--address") + 1] == "10.0.0.1:6379"
    assert argv[-1] == "--block"  # Ray's own options go through as they are


def test_ray_start_refuses_bad_input() -> None:
    both = _ray_start("--head", "--address", "10.0.0.1:6379")
    assert both.returncode == 2 and "either --head or --address" in both.stderr
    bad = _ray_start("--head", "--resources", '{"rack": "one"}')
    assert bad.returncode == 2 and "JSON object of numbers" in bad.stderr


def test_replica_asks_for_the_memory_estimate() -> None:
    report = detect(Host.from_env(str(ROOT)))
    assert node_memory(report) == _meminfo_available(ROOT)
    options = replica_options(600 * 1024**2, 1.0)
    assert options == {"num_cpus": 1.0, "resources": {NODE_RESOURCE: 1.0}, "memory": 600 << 20}
