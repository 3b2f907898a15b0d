"""famous-native: models ``famous.genai`` builds, served by
``python -m famous.runtimes.workers.native``."""

from __future__ import annotations

from typing import ClassVar

from famous.runtimes.base import (
    LaunchSpec,
    RuntimeAdapter,
    physical_cores,
)
from famous.runtimes.keys import NATIVE_KEYS

# Engine manifests say torch's names; the server takes famous.genai's short ones.
_DTYPES = {"float32": "fp32", "bfloat16": "bf16", "float16": "fp16"}


class FamousNativeServer(RuntimeAdapter):
    """famous's own OpenAI server around a genai model directory."""

    runtime: ClassVar[str] = "famous-native"
    server: ClassVar[str] = "famous.runtimes.workers.native"
    install_command: ClassVar[str] = "pip install 'famous[genai]'"
    health_path: ClassVar[str] = "/v1/models"
    configuration_keys: ClassVar[dict[str, str]] = NATIVE_KEYS
    required_modules: ClassVar[tuple[str, ...]] = ("torch", "famous.runtimes.workers.native")

    def command(self, spec: LaunchSpec, port: int) -> list[str]:
        cfg = self.settings(spec)
        argv = self.worker_argv(spec, port)
        seq = cfg.get("context_size") or cfg.get("max_seq_len")
        if seq:
            argv += ["--max-seq-len", str(int(seq))]
        if cfg.get("dtype"):
            argv += ["--dtype", _DTYPES.get(str(cfg["dtype"]), str(cfg["dtype"]))]
        if cfg.get("quantize"):
            argv += ["--quantize", str(cfg["quantize"])]
        argv += ["--threads", str(int(cfg.get("threads") or physical_cores()))]
        return argv

    def environment(self, spec: LaunchSpec) -> dict[str, str]:
        """OpenMP threads sleep between the kernels' GEMVs unless the user says otherwise:
        spinning ones take the cores a loaded machine's work needs (at the 1B int4 shape
        on 2 busy cores, 2 spinning threads ran 3x slower than 2 passive ones)."""
        env = super().environment(spec)
        env.setdefault("OMP_WAIT_POLICY", "passive")
        return env
