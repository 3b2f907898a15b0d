"""transformers: any safetensors causal LM, served by famous's own worker process.

The worker (``famous.runtimes.workers.transformers``) wraps ``model.generate`` in OpenAI's
HTTP API. It is the engine of last resort for architectures the native engine lacks, and
the reference the other engines are compared against.
"""

from __future__ import annotations

from typing import ClassVar

from famous.runtimes.base import (
    LaunchSpec,
    RuntimeAdapter,
    as_bool,
)
from famous.runtimes.keys import TRANSFORMERS_KEYS

TRANSFORMERS_INSTALL = "pip install 'famous[transformers]'"


class TransformersServer(RuntimeAdapter):
    """``python -m famous.runtimes.workers.transformers`` for one model directory."""

    runtime: ClassVar[str] = "transformers"
    server: ClassVar[str] = "famous.runtimes.workers.transformers"
    install_command: ClassVar[str] = TRANSFORMERS_INSTALL
    health_path: ClassVar[str] = "/health"
    configuration_keys: ClassVar[dict[str, str]] = TRANSFORMERS_KEYS
    local_only_keys: ClassVar[frozenset[str]] = frozenset({"allow_pickle"})
    required_modules: ClassVar[tuple[str, ...]] = ("torch", "transformers", "safetensors")

    def command(self, spec: LaunchSpec, port: int) -> list[str]:
        cfg = self.settings(spec)
        argv = self.worker_argv(spec, port)
        for key, flag in (
            ("dtype", "--dtype"),
            ("device", "--device"),
            ("threads", "--threads"),
            ("context_size", "--context-size"),
        ):
            if cfg.get(key) is not None:
                argv += [flag, str(cfg[key])]
        if as_bool(cfg.get("allow_pickle", False)):
            argv.append("--allow-pickle")
        return argv
