"""ExecuTorch and LiteRT engines: a ``.pte`` / ``.tflite`` famous built, served by
``python -m famous.runtimes.workers.edge`` (famous's pipeline over the program's
prefill and decode signatures, behind the OpenAI routes)."""

from __future__ import annotations

from typing import ClassVar

from famous.runtimes.base import LaunchSpec, RuntimeAdapter
from famous.runtimes.keys import EDGE_KEYS


class _EdgeServer(RuntimeAdapter):
    server: ClassVar[str] = "famous.runtimes.workers.edge"
    health_path: ClassVar[str] = "/v1/models"
    configuration_keys: ClassVar[dict[str, str]] = EDGE_KEYS

    def command(self, spec: LaunchSpec, port: int) -> list[str]:
        cmd = self.worker_argv(spec, port)
        threads = self.settings(spec).get("threads")
        if threads:
            cmd += ["--threads", str(int(threads))]
        return cmd


class ExecuTorchServer(_EdgeServer):
    runtime: ClassVar[str] = "executorch"
    install_command: ClassVar[str] = "pip install 'famous[executorch]'"
    # top-level modules only: find_spec of a submodule would import its package
    required_modules: ClassVar[tuple[str, ...]] = ("torch", "executorch")


class LiteRTServer(_EdgeServer):
    runtime: ClassVar[str] = "litert"
    install_command: ClassVar[str] = "pip install 'famous[litert]'"
    required_modules: ClassVar[tuple[str, ...]] = ("torch", "ai_edge_litert")
