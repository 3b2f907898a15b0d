"""vLLM: safetensors (bf16, AWQ, GPTQ, FP8) on NVIDIA and AMD GPUs through ``vllm serve``.

vLLM opens its port only after the engine has loaded the weights and profiled memory, and
its ``/health`` answers 200 from then on. famous passes its model name as
``--served-model-name`` (the gateway routes by it) and splits the model over every GPU it
may use (``--tensor-parallel-size``), unless the engine's configuration says otherwise.
"""

from __future__ import annotations

import os
import shutil
import sys
from collections.abc import Mapping
from pathlib import Path
from typing import Any, ClassVar

from famous.runtimes.base import (
    LaunchSpec,
    RuntimeAdapter,
    RuntimeNotInstalled,
    as_bool,
    missing_modules,
)
from famous.runtimes.keys import VLLM_KEYS

VLLM_INSTALL = "pip install 'famous[vllm]'   # on ROCm: vLLM's ROCm wheels or container"


# configuration key -> vllm serve flag taking a value
_VALUE_FLAGS: dict[str, str] = {
    "gpu_memory_utilization": "--gpu-memory-utilization",
    "pipeline_parallel_size": "--pipeline-parallel-size",
    "dtype": "--dtype",
    "quantization": "--quantization",
    "kv_cache_dtype": "--kv-cache-dtype",
    "max_num_seqs": "--max-num-seqs",
    "seed": "--seed",
    "distributed_executor_backend": "--distributed-executor-backend",
}
# configuration key -> boolean vllm serve flag
_SWITCHES: dict[str, str] = {
    "enforce_eager": "--enforce-eager",
    "enable_prefix_caching": "--enable-prefix-caching",
}


def visible_gpus(root: Path = Path("/"), env: Mapping[str, str] | None = None) -> int:
    """GPUs this process may use: the *_VISIBLE_DEVICES lists, else NVIDIA / AMD devices."""
    env = os.environ if env is None else env
    for var in ("CUDA_VISIBLE_DEVICES", "HIP_VISIBLE_DEVICES", "ROCR_VISIBLE_DEVICES"):
        value = env.get(var)
        if value is not None:
            return len([d for d in value.split(",") if d.strip() and d.strip() != "-1"])
    nvidia = root / "proc/driver/nvidia/gpus"
    if nvidia.is_dir():
        count = len(list(nvidia.iterdir()))
        if count:
            return count
    nodes = root / "sys/class/kfd/kfd/topology/nodes"
    amd = 0
    if nodes.is_dir():
        for node in nodes.iterdir():
            try:
                props = (node / "properties").read_text()
            except OSError:
                continue
            for line in props.splitlines():
                key, _, value = line.partition(" ")
                if key == "gfx_target_version" and value.strip() not in ("", "0"):
                    amd += 1
    return amd


def default_tensor_parallel(gpus: int) -> int:
    """vLLM needs attention heads divisible by the split: the largest power of two ≤ gpus."""
    size = 1
    while size * 2 <= gpus:
        size *= 2
    return size


def find_vllm() -> list[str] | None:
    """The ``vllm`` command of this Python environment (or on PATH)."""
    beside = Path(sys.executable).with_name("vllm")
    if beside.is_file() and os.access(beside, os.X_OK):
        return [str(beside)]
    found = shutil.which("vllm")
    return [found] if found else None


class VllmServer(RuntimeAdapter):
    """``vllm serve MODEL`` with the engine's configuration."""

    runtime: ClassVar[str] = "vllm"
    server: ClassVar[str] = "vllm serve"
    install_command: ClassVar[str] = VLLM_INSTALL
    health_path: ClassVar[str] = "/health"
    configuration_keys: ClassVar[dict[str, str]] = VLLM_KEYS

    def __init__(
        self, configuration: Mapping[str, Any] | None = None, gpus: int | None = None
    ) -> None:
        super().__init__(configuration)
        self._gpus = gpus

    def check_installed(self) -> None:
        if missing_modules(("vllm",)):
            raise RuntimeNotInstalled(
                self.runtime, "Python module vllm is missing", self.install_command
            )
        if find_vllm() is None:
            raise RuntimeNotInstalled(
                self.runtime, "the vllm command is not on PATH", self.install_command
            )

    def command(self, spec: LaunchSpec, port: int) -> list[str]:
        cfg = self.settings(spec)
        program = find_vllm() or ["vllm"]
        argv = [
            *program,
            "serve",
            str(spec.model_path),
            "--served-model-name",
            spec.name,
            "--host",
            spec.host,
            "--port",
            str(port),
            "--tensor-parallel-size",
            str(self.tensor_parallel(cfg)),
        ]
        max_len = cfg.get("max_model_len", cfg.get("context_size"))
        if max_len is not None:
            argv += ["--max-model-len", str(int(max_len))]
        for key, flag in _VALUE_FLAGS.items():
            if cfg.get(key) is not None:
                argv += [flag, str(cfg[key])]
        for key, flag in _SWITCHES.items():
            if as_bool(cfg.get(key, False)):
                argv.append(flag)
        return argv

    def tensor_parallel(self, cfg: Mapping[str, Any]) -> int:
        if cfg.get("tensor_parallel_size") is not None:
            return int(cfg["tensor_parallel_size"])
        gpus = self._gpus if self._gpus is not None else visible_gpus()
        return default_tensor_parallel(max(1, gpus))

    def environment(self, spec: LaunchSpec) -> dict[str, str]:
        env = super().environment(spec)
        env.setdefault("VLLM_NO_USAGE_STATS", "1")  # no telemetry from a local engine
        env.setdefault("DO_NOT_TRACK", "1")
        return env
