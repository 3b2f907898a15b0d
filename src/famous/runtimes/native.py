"""famous-native: models ``famous.genai`` builds, served by ``python -m famous.genai.server``."""

from __future__ import annotations

import importlib.util
import sys
from typing import ClassVar

from famous.runtimes.base import LaunchSpec, RuntimeAdapter, RuntimeNotInstalled

CONFIGURATION_KEYS: dict[str, str] = {
    "max_seq_len": "longest sequence the native engine keeps in its KV cache",
    "threads": "torch intra-op threads",
}


class FamousNativeServer(RuntimeAdapter):
    """famous's own OpenAI server around a genai model directory."""

    runtime: ClassVar[str] = "famous-native"
    server: ClassVar[str] = "famous.genai.server"
    install_command: ClassVar[str] = "pip install 'famous[genai]'"
    health_path: ClassVar[str] = "/v1/models"
    configuration_keys: ClassVar[dict[str, str]] = CONFIGURATION_KEYS

    def check_installed(self) -> None:
        for module in ("torch", "famous.genai.server"):
            try:
                found = importlib.util.find_spec(module) is not None
            except ModuleNotFoundError:
                found = False
            if not found:
                raise RuntimeNotInstalled(
                    self.runtime, f"Python module {module} is missing", self.install_command
                )

    def command(self, spec: LaunchSpec, port: int) -> list[str]:
        return [
            sys.executable,
            "-m",
            "famous.genai.server",
            "--model",
            str(spec.model_path),
            "--host",
            spec.host,
            "--port",
            str(port),
        ]
