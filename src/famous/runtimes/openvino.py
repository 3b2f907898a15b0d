"""OpenVINO GenAI: OpenVINO IR models on Intel CPUs, GPUs and NPUs, in famous's own worker.

The device comes from the engine's configuration (``device: GPU`` in the intel-gpu engine,
``NPU`` in intel-npu, ``CPU`` by default), so one runtime serves all three.
"""

from __future__ import annotations

from typing import ClassVar

from famous.runtimes.base import (
    LaunchSpec,
    RuntimeAdapter,
)
from famous.runtimes.keys import OPENVINO_KEYS

OPENVINO_INSTALL = "pip install 'famous[openvino]'   # openvino-genai"


# configuration key -> OpenVINO property passed to LLMPipeline
_PROPERTIES: dict[str, str] = {
    "max_prompt_len": "MAX_PROMPT_LEN",
    "min_response_len": "MIN_RESPONSE_LEN",
    "performance_hint": "PERFORMANCE_HINT",
    "inference_num_threads": "INFERENCE_NUM_THREADS",
}


class OpenVINOServer(RuntimeAdapter):
    """``python -m famous.runtimes.workers.openvino`` for one OpenVINO IR directory."""

    runtime: ClassVar[str] = "openvino"
    server: ClassVar[str] = "famous.runtimes.workers.openvino"
    install_command: ClassVar[str] = OPENVINO_INSTALL
    health_path: ClassVar[str] = "/health"
    configuration_keys: ClassVar[dict[str, str]] = OPENVINO_KEYS
    local_only_keys: ClassVar[frozenset[str]] = frozenset({"cache_dir"})
    required_modules: ClassVar[tuple[str, ...]] = (
        "openvino",
        "openvino_genai",
        "openvino_tokenizers",
    )

    def command(self, spec: LaunchSpec, port: int) -> list[str]:
        cfg = self.settings(spec)
        argv = self.worker_argv(spec, port)
        argv += ["--device", str(cfg.get("device") or "CPU").upper()]
        if cfg.get("context_size") is not None:
            argv += ["--context-size", str(int(cfg["context_size"]))]
        if cfg.get("cache_dir"):
            argv += ["--cache-dir", str(cfg["cache_dir"])]
        for key, prop in _PROPERTIES.items():
            if cfg.get(key) is not None:
                argv += ["--property", f"{prop}={cfg[key]}"]
        return argv
