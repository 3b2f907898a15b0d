"""MLX: MLX repos through ``mlx_lm``'s own server (Apple Silicon; ``mlx[cpu]`` on Linux).

famous starts ``mlx_lm.server`` through a thin launcher (``python -m famous.runtimes.mlx``)
that changes two things and nothing else:

* **the served name.** mlx_lm.server treats a request's ``model`` as a path or Hub repo to
  load, and the gateway forwards requests with famous's name for the model (``"tiny"``),
  which mlx_lm would try to download. The launcher maps that name to the loaded model, the
  way mlx_lm maps its own ``"default_model"``.
* **health.** mlx_lm's ``/health`` answers 200 while the weights are still loading; the
  launcher answers 503 until the model is loaded, so famous's health wait means "ready",
  and it exits when mlx_lm's model thread dies (a model that cannot load), so famous sees
  a failed engine instead of one that answers 503 for ever.
* **the model list.** mlx_lm's ``/v1/models`` scans the Hugging Face cache, and fails with an
  empty body on a machine that has none (huggingface_hub raises ``CacheNotFound``); it would
  also list every other cached repo. The launcher lists the one model it serves.

Every other ``mlx_lm.server`` option passes through unchanged (after ``--``).
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from collections.abc import Mapping
from typing import Any, ClassVar

from famous.runtimes.base import (
    LaunchSpec,
    RuntimeAdapter,
)
from famous.runtimes.keys import MLX_KEYS

MLX_INSTALL = "pip install 'famous[mlx]'   # mlx (mlx[cpu] on Linux) and mlx-lm"


# configuration key -> mlx_lm.server flag
_FLAGS: dict[str, str] = {
    "chat_template": "--chat-template",
    "temperature": "--temp",
    "top_p": "--top-p",
    "top_k": "--top-k",
    "decode_concurrency": "--decode-concurrency",
    "prompt_cache_size": "--prompt-cache-size",
    "kv_bits": "--kv-bits",
    "log_level": "--log-level",
}


class MlxServer(RuntimeAdapter):
    """``mlx_lm.server`` for one MLX model directory, under famous's name for it."""

    runtime: ClassVar[str] = "mlx"
    server: ClassVar[str] = "mlx_lm.server"
    install_command: ClassVar[str] = MLX_INSTALL
    health_path: ClassVar[str] = "/health"
    configuration_keys: ClassVar[dict[str, str]] = MLX_KEYS
    required_modules: ClassVar[tuple[str, ...]] = ("mlx", "mlx_lm")

    def command(self, spec: LaunchSpec, port: int) -> list[str]:
        cfg = self.settings(spec)
        argv = [
            sys.executable,
            "-m",
            "famous.runtimes.mlx",
            "--served-model-name",
            spec.name,
            "--",
            "--model",
            str(spec.model_path),
            "--host",
            spec.host,
            "--port",
            str(port),
        ]
        max_tokens = cfg.get("max_tokens", cfg.get("context_size"))
        if max_tokens is not None:
            argv += ["--max-tokens", str(int(max_tokens))]
        argv += _flags(cfg)
        return argv


def _flags(cfg: Mapping[str, Any]) -> list[str]:
    out: list[str] = []
    for key, flag in _FLAGS.items():
        if cfg.get(key) is not None:
            out += [flag, str(cfg[key])]
    return out


def _patch_server(server: Any, served_name: str) -> None:
    """Teach mlx_lm.server famous's name for its model, and a health that means loaded."""
    base_provider = server.ModelProvider

    class NamedModelProvider(base_provider):  # type: ignore[misc, valid-type]
        def __init__(self, cli_args: argparse.Namespace) -> None:
            super().__init__(cli_args)
            for table in ("_model_map", "_adapter_map", "_draft_model_map"):
                mapping = getattr(self, table, None)
                if not isinstance(mapping, dict) or "default_model" not in mapping:
                    raise SystemExit(
                        f"error: this mlx-lm has no ModelProvider.{table}; famous needs "
                        "mlx-lm>=0.19 (pip install -U mlx-lm)"
                    )
                mapping[served_name] = mapping["default_model"]

    # The handler's methods are replaced on mlx_lm's own class: some mlx-lm releases (0.32)
    # ignore a handler_class passed to run(), so a subclass would silently not be used.
    handler = server.APIHandler
    base_health = handler.handle_health_check

    def handle_health_check(self: Any) -> None:
        provider = getattr(self.response_generator, "model_provider", None)
        if provider is not None and getattr(provider, "model", None) is None:
            self._set_completion_headers(503)
            self.end_headers()
            self.wfile.write(b'{"status": "loading"}')
            return
        base_health(self)

    def handle_models_request(self: Any) -> None:
        entry = {"id": served_name, "object": "model", "created": self.created}
        entry["owned_by"] = "famous"
        asked = self.path.split("?")[0].rstrip("/").removeprefix("/v1/models")
        if asked in ("", f"/{served_name}"):
            status, body = 200, entry if asked else {"object": "list", "data": [entry]}
        else:
            status = 404
            body = {"error": {"message": f"model {asked[1:]!r} not found", "code": 404}}
        self._set_completion_headers(status)
        self.end_headers()
        self.wfile.write(json.dumps(body).encode())

    handler.handle_health_check = handle_health_check
    handler.handle_models_request = handle_models_request

    base_generator = server.ResponseGenerator

    class ExitOnFailure(base_generator):  # type: ignore[misc, valid-type]
        def _run_generate(self) -> None:
            super()._run_generate()
            if getattr(self, "_generation_failed", False):
                # mlx_lm keeps serving 503s after its model thread dies; famous supervises
                # processes, so a dead engine must exit (the supervisor shows its log).
                sys.stderr.write("error: mlx_lm's generation thread died (see above)\n")
                sys.stderr.flush()
                os._exit(3)

    server.ModelProvider = NamedModelProvider
    server.ResponseGenerator = ExitOnFailure


def main(argv: list[str] | None = None) -> int:
    """``python -m famous.runtimes.mlx --served-model-name NAME -- <mlx_lm.server options>``."""
    args = list(sys.argv[1:] if argv is None else argv)
    parser = argparse.ArgumentParser(prog="python -m famous.runtimes.mlx")
    parser.add_argument("--served-model-name", required=True)
    split = args.index("--") if "--" in args else len(args)
    ours = parser.parse_args(args[:split])
    rest = args[split + 1 :]
    try:
        from mlx_lm import server
    except ImportError as exc:
        sys.stderr.write(f"error: {exc}; install it with: {MLX_INSTALL}\n")
        return 2
    _patch_server(server, ours.served_model_name)
    sys.argv = ["mlx_lm.server", *rest]
    server.main()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
