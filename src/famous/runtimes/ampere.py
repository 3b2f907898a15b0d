"""Ampere-optimized llama.cpp: GGUF on Ampere Altra / AmpereOne through ``llama-cpp-python-ampere``.

Ampere ships its optimized llama.cpp as a drop-in build of llama-cpp-python (the same
``llama_cpp`` module and ``llama_cpp.server``), for arm64 only. famous launches it exactly
like the llama-cpp-python server, after checking that this machine is arm64 and that the
``llama_cpp`` it would import is Ampere's build and not the generic one.
"""

from __future__ import annotations

import importlib.metadata
import platform
from typing import ClassVar

from famous.runtimes.base import RuntimeNotInstalled, missing_modules
from famous.runtimes.keys import AMPERE_KEYS
from famous.runtimes.llamacpp import LlamaCppPythonServer

AMPERE_DISTRIBUTION = "llama-cpp-python-ampere"
AMPERE_INSTALL = (
    "pip uninstall -y llama-cpp-python && pip install 'llama-cpp-python-ampere[server]'"
    "   # arm64 (Ampere Altra / AmpereOne) only"
)
ARM64 = ("aarch64", "arm64")


def machine_architecture() -> str:
    return platform.machine().lower()


class AmpereLlamaCppServer(LlamaCppPythonServer):
    """``python -m llama_cpp.server`` from Ampere's llama-cpp-python build."""

    runtime: ClassVar[str] = "llamacpp-ampere"
    server: ClassVar[str] = "llama_cpp.server (Ampere build)"
    install_command: ClassVar[str] = AMPERE_INSTALL
    configuration_keys: ClassVar[dict[str, str]] = AMPERE_KEYS

    def check_installed(self) -> None:
        arch = machine_architecture()
        if arch not in ARM64:
            raise RuntimeNotInstalled(
                self.runtime,
                f"Ampere's llama.cpp build runs only on arm64 (Ampere Altra / AmpereOne); "
                f"this machine is {arch}, so use a llamacpp engine here (famous engines MODEL)",
                self.install_command,
            )
        try:
            importlib.metadata.distribution(AMPERE_DISTRIBUTION)
        except importlib.metadata.PackageNotFoundError:
            raise RuntimeNotInstalled(
                self.runtime, f"the {AMPERE_DISTRIBUTION} package is missing", self.install_command
            ) from None
        try:
            owner = importlib.metadata.distribution("llama-cpp-python")
        except importlib.metadata.PackageNotFoundError:
            owner = None
        if owner is not None:
            raise RuntimeNotInstalled(
                self.runtime,
                "the generic llama-cpp-python is installed too and shadows Ampere's llama_cpp",
                self.install_command,
            )
        missing = missing_modules(("llama_cpp", "uvicorn", "sse_starlette", "starlette_context"))
        if missing:
            raise RuntimeNotInstalled(
                self.runtime, f"Python module {', '.join(missing)} is missing", self.install_command
            )
