"""ExecuTorch and LiteRT engines: a ``.pte`` / ``.tflite`` famous built, served by
``python -m famous.genai.export.edge_server`` (famous's pipeline over the program's
prefill and decode signatures, behind the OpenAI routes)."""

from __future__ import annotations

import importlib.util
import sys
from typing import ClassVar

from famous.runtimes.base import LaunchSpec, RuntimeAdapter, RuntimeNotInstalled

CONFIGURATION_KEYS: dict[str, str] = {
    "context_size": "KV-cache slots the program was built with (informational)",
    "prefill_lengths": "prefill signatures the program holds (informational)",
    "threads": "CPU threads",
}


class _EdgeServer(RuntimeAdapter):
    server: ClassVar[str] = "famous.genai.export.edge_server"
    health_path: ClassVar[str] = "/v1/models"
    configuration_keys: ClassVar[dict[str, str]] = CONFIGURATION_KEYS
    modules: ClassVar[tuple[str, ...]] = ()

    def check_installed(self) -> None:
        for module in ("torch", "famous.genai.export.edge_server", *self.modules):
            try:
                found = importlib.util.find_spec(module) is not None
            except ModuleNotFoundError:
                found = False
            if not found:
                raise RuntimeNotInstalled(
                    self.runtime, f"Python module {module} is missing", self.install_command
                )

    def command(self, spec: LaunchSpec, port: int) -> list[str]:
        cmd = [
            sys.executable,
            "-m",
            self.server,
            "--model",
            str(spec.model_path),
            "--host",
            spec.host,
            "--port",
            str(port),
            "--served-model-name",
            spec.name,
        ]
        threads = (getattr(self, "configuration", None) or {}).get("threads")
        if threads:
            cmd += ["--threads", str(int(threads))]
        return cmd


class ExecuTorchServer(_EdgeServer):
    runtime: ClassVar[str] = "executorch"
    install_command: ClassVar[str] = "pip install 'famous[executorch]'"
    modules: ClassVar[tuple[str, ...]] = ("executorch",)  # top level: find_spec stays light


class LiteRTServer(_EdgeServer):
    runtime: ClassVar[str] = "litert"
    install_command: ClassVar[str] = "pip install 'famous[litert]'"
    modules: ClassVar[tuple[str, ...]] = ("ai_edge_litert",)
