"""llama.cpp: GGUF models through llama-cpp-python's server, or the native ``llama-server``.

``llama-server`` batches concurrent requests over parallel slots, which llama-cpp-python's
server does not (it serializes them), so famous prefers it whenever one is configured, on
PATH, or installed with ``famous install-component llama-server``.
"""

from __future__ import annotations

import importlib.util
import os
import shutil
import sys
from collections.abc import Mapping
from pathlib import Path
from typing import Any, ClassVar

from famous.formats import gguf_meta
from famous.runtimes.base import (
    LaunchSpec,
    RuntimeAdapter,
    RuntimeNotInstalled,
    as_bool,
    normalize_configuration,
    physical_cores,
)
from famous.runtimes.components import installed_llama_server

LLAMACPP_INSTALL = "pip install 'famous[llamacpp]'   # llama-cpp-python[server]"
LLAMA_SERVER_INSTALL = "famous install-component llama-server"
DEFAULT_CONTEXT = 4096
# llama-cpp-python's chat formats that prompt with the tools and parse the model's calls
FUNCTION_CALLING_FORMATS = frozenset(
    {"chatml-function-calling", "functionary", "functionary-v1", "functionary-v2"}
)

# Every key the llama.cpp engines read from an engine manifest's ``configuration``
# (kebab-case or snake_case; aliases in parentheses are accepted too).
CONFIGURATION_KEYS: dict[str, str] = {
    "server": "auto (llama-server when available) | llama-server | llama-cpp-python",
    "llama_server_path": "path of a llama-server binary to use",
    "context_size": "context length in tokens (n-ctx); default: the model's, at most 4096",
    "ctx_size": "alias of context-size",
    "n_ctx": "alias of context-size",
    "threads": "decode threads; default: physical cores (n-threads)",
    "n_threads": "alias of threads",
    "batch_size": "logical batch size for prompt processing (n-batch)",
    "n_batch": "alias of batch-size",
    "ubatch_size": "physical batch size (n-ubatch)",
    "n_ubatch": "alias of ubatch-size",
    "n_gpu_layers": "layers offloaded to the GPU on GPU builds (-1 = all)",
    "flash_attn": "on | off | auto: flash attention (6-17 % faster prompt processing here)",
    "parallel": "llama-server only: parallel slots that batch concurrent requests",
    "chat_format": "llama-cpp-python chat format when the GGUF has no chat template",
    "chat_template": "llama-server built-in template name when the GGUF has none",
    "embedding": "serve /v1/embeddings (auto-detected from the GGUF)",
    "pooling": "embedding pooling: mean | cls | last (llama-server)",
    "seed": "default sampling seed",
}


def _pick(cfg: Mapping[str, Any], *names: str, default: Any = None) -> Any:
    for name in names:
        if name in cfg and cfg[name] is not None:
            return cfg[name]
    return default


def _flash_attn(value: Any) -> str | None:
    if value is None:
        return None
    if isinstance(value, str) and value.strip().lower() in ("on", "off", "auto"):
        return value.strip().lower()
    return "on" if as_bool(value) else "off"


class _LlamaCppBase(RuntimeAdapter):
    runtime: ClassVar[str] = "llamacpp"
    configuration_keys: ClassVar[dict[str, str]] = CONFIGURATION_KEYS
    local_only_keys: ClassVar[frozenset[str]] = frozenset({"llama_server_path"})
    features: ClassVar[frozenset[str]] = frozenset({"json_schema"})

    def _metadata(self, spec: LaunchSpec) -> dict[str, Any]:
        try:
            return gguf_meta.read_metadata(spec.model_path)
        except (OSError, gguf_meta.GGUFError):
            return {}

    def limits(self, spec: LaunchSpec) -> dict[str, str]:
        """A chat model's engine serves no embeddings (llama.cpp answers 500 or 501), and an
        embedding model's no text."""
        limits = super().limits(spec)
        if self.settings(spec)["embedding"]:
            text = "generate text: it serves an embedding model"
            limits.update(chat=text, completions=text)
        else:
            limits["embeddings"] = (
                "compute embeddings: it serves a text-generation model (use an embedding "
                "model, or register this file with embedding: true)"
            )
        return limits

    def settings(self, spec: LaunchSpec) -> dict[str, Any]:
        """The effective settings: configuration, then defaults from the GGUF and the machine."""
        cfg = {**self.configuration, **normalize_configuration(spec.configuration)}
        meta = self._metadata(spec)
        trained = gguf_meta.context_length(meta)
        ctx = _pick(cfg, "ctx_size", "n_ctx", "context", "context_size")
        if ctx is None:
            ctx = min(trained, DEFAULT_CONTEXT) if trained else DEFAULT_CONTEXT
        embedding = as_bool(_pick(cfg, "embedding", "embeddings", default=spec.embedding))
        embedding = embedding or gguf_meta.is_embedding_model(meta)
        return {
            "ctx": int(ctx),
            "threads": int(_pick(cfg, "threads", "n_threads", default=physical_cores())),
            "batch": _pick(cfg, "batch_size", "n_batch"),
            "ubatch": _pick(cfg, "ubatch_size", "n_ubatch"),
            "gpu_layers": _pick(cfg, "n_gpu_layers", "gpu_layers", "ngl"),
            "flash_attn": _flash_attn(_pick(cfg, "flash_attn", "fa")),
            "parallel": _pick(cfg, "parallel", "n_parallel", "np"),
            "chat_format": _pick(cfg, "chat_format"),
            "chat_template": _pick(cfg, "chat_template"),
            "has_template": gguf_meta.has_chat_template(meta),
            "template_tools": gguf_meta.template_renders_tools(meta),
            "embedding": embedding,
            "pooling": _pick(cfg, "pooling", "pooling_type") or gguf_meta.pooling_type(meta),
            "seed": _pick(cfg, "seed"),
        }


class LlamaCppPythonServer(_LlamaCppBase):
    """``python -m llama_cpp.server`` (llama-cpp-python's FastAPI server)."""

    server: ClassVar[str] = "llama_cpp.server"
    unsupported: ClassVar[dict[str, str]] = {
        "n": "return several choices (n > 1): it answers one; llama.cpp's own server can "
        "(famous install-component llama-server)",
    }

    def adapt_request(self, kind: str, body: dict[str, Any]) -> dict[str, Any]:
        """OpenAI's ``response_format: {type: json_schema, json_schema: {schema}}`` is
        llama-cpp-python's ``{type: json_object, schema}`` (it refuses the first with a 500)."""
        wanted = body.get("response_format")
        if kind != "chat" or not isinstance(wanted, dict) or wanted.get("type") != "json_schema":
            return body
        spec = wanted.get("json_schema")
        schema = spec.get("schema") if isinstance(spec, dict) else None
        constraint: dict[str, Any] = {"type": "json_object"}
        if isinstance(schema, dict):
            constraint["schema"] = schema
        return {**body, "response_format": constraint}

    install_command: ClassVar[str] = LLAMACPP_INSTALL
    health_path: ClassVar[str] = "/v1/models"

    def launch_features(self, spec: LaunchSpec) -> frozenset[str]:
        """``template_tools`` only under a function-calling chat format: under the GGUF's own
        template this server shows the model its tools but hands the call back as text."""
        if self.settings(spec)["chat_format"] in FUNCTION_CALLING_FORMATS:
            return self.features | {"template_tools"}
        return self.features

    def check_installed(self) -> None:
        for module in ("llama_cpp", "uvicorn", "sse_starlette", "starlette_context"):
            if importlib.util.find_spec(module) is None:
                raise RuntimeNotInstalled(
                    "llamacpp", f"Python module {module} is missing", self.install_command
                )

    def command(self, spec: LaunchSpec, port: int) -> list[str]:
        s = self.settings(spec)
        argv = [
            sys.executable,
            "-m",
            "llama_cpp.server",
            "--model",
            str(spec.model_path),
            "--model_alias",
            spec.name,
            "--host",
            spec.host,
            "--port",
            str(port),
            "--n_ctx",
            str(s["ctx"]),
            "--n_threads",
            str(s["threads"]),
            "--n_threads_batch",
            str(s["threads"]),
            # Requests queue instead of cancelling the one streaming now.
            "--interrupt_requests",
            "false",
            "--embedding",
            "true" if s["embedding"] else "false",
        ]
        if s["batch"] is not None:
            argv += ["--n_batch", str(s["batch"])]
        if s["ubatch"] is not None:
            argv += ["--n_ubatch", str(s["ubatch"])]
        if s["gpu_layers"] is not None:
            argv += ["--n_gpu_layers", str(s["gpu_layers"])]
        if s["flash_attn"] in ("on", "off"):
            argv += ["--flash_attn", "true" if s["flash_attn"] == "on" else "false"]
        chat_format = s["chat_format"]
        if chat_format is None and not s["has_template"] and not s["embedding"]:
            chat_format = "chatml"  # without a template llama-cpp-python guesses llama-2
        if chat_format:
            argv += ["--chat_format", str(chat_format)]
        if s["seed"] is not None:
            argv += ["--seed", str(s["seed"])]
        return argv

    def environment(self, spec: LaunchSpec) -> dict[str, str]:
        env = super().environment(spec)
        # llama-cpp-python's settings are pydantic BaseSettings: stray variables named like
        # its fields (MODEL, PORT, N_CTX…) would change the server; the argv is the truth.
        for key in ("MODEL", "MODEL_ALIAS", "HOST", "PORT", "API_KEY", "CONFIG_FILE"):
            env.pop(key, None)
        return env


class LlamaServer(_LlamaCppBase):
    """The native ``llama-server`` binary: parallel slots, continuous batching."""

    server: ClassVar[str] = "llama-server"
    install_command: ClassVar[str] = LLAMA_SERVER_INSTALL
    health_path: ClassVar[str] = "/health"

    def __init__(
        self, configuration: Mapping[str, Any] | None = None, binary: Path | None = None
    ) -> None:
        super().__init__(configuration)
        self.binary = binary or find_llama_server(self.configuration)

    def launch_features(self, spec: LaunchSpec) -> frozenset[str]:
        """``template_tools`` when the template it renders (configured, else the GGUF's)
        names tools: ``--jinja`` then parses the model's calls itself."""
        s = self.settings(spec)
        configured = s["chat_template"]
        renders = "tools" in str(configured) if configured else s["template_tools"]
        if renders and not s["embedding"]:
            return self.features | {"template_tools"}
        return self.features

    def check_installed(self) -> None:
        if self.binary is None or not os.access(self.binary, os.X_OK):
            raise RuntimeNotInstalled(
                "llamacpp", "no llama-server binary found", self.install_command
            )

    def command(self, spec: LaunchSpec, port: int) -> list[str]:
        s = self.settings(spec)
        argv = [
            str(self.binary),
            "--model",
            str(spec.model_path),
            "--alias",
            spec.name,
            "--host",
            spec.host,
            "--port",
            str(port),
            "--ctx-size",
            str(s["ctx"]),
            "--threads",
            str(s["threads"]),
            "--no-webui",
        ]
        if s["batch"] is not None:
            argv += ["--batch-size", str(s["batch"])]
        if s["ubatch"] is not None:
            argv += ["--ubatch-size", str(s["ubatch"])]
        if s["gpu_layers"] is not None:
            argv += ["--n-gpu-layers", str(s["gpu_layers"])]
        if s["flash_attn"]:
            argv += ["--flash-attn", s["flash_attn"]]
        if s["parallel"] is not None:
            argv += ["--parallel", str(s["parallel"])]
        if s["embedding"]:
            argv += ["--embeddings", "--pooling", str(s["pooling"] or "mean")]
        else:
            argv += ["--jinja"]
            if s["chat_template"]:
                argv += ["--chat-template", str(s["chat_template"])]
            elif not s["has_template"]:
                argv += ["--chat-template", "chatml"]
        if s["seed"] is not None:
            argv += ["--seed", str(s["seed"])]
        return argv


def find_llama_server(configuration: Mapping[str, Any] | None = None) -> Path | None:
    """A llama-server binary: configured path, $FAMOUS_LLAMA_SERVER, the component, or PATH."""
    cfg = normalize_configuration(configuration)
    for candidate in (
        cfg.get("llama_server_path"),
        os.environ.get("FAMOUS_LLAMA_SERVER"),
        installed_llama_server(),
        shutil.which("llama-server"),
    ):
        if candidate and Path(candidate).is_file() and os.access(candidate, os.X_OK):
            return Path(candidate)
    return None


def llamacpp_adapter(configuration: Mapping[str, Any] | None = None) -> _LlamaCppBase:
    """The llama.cpp server to use under this configuration (``server: auto`` prefers native).

    ``FAMOUS_LLAMACPP_SERVER`` sets the choice for engines whose configuration does not.
    """
    cfg = normalize_configuration(configuration)
    choice = str(cfg.get("server") or os.environ.get("FAMOUS_LLAMACPP_SERVER") or "auto").lower()
    if choice in ("llama-server", "native"):
        return LlamaServer(cfg)
    if choice in ("llama-cpp-python", "llama_cpp.server", "python"):
        return LlamaCppPythonServer(cfg)
    if choice != "auto":
        raise ValueError(
            f"configuration server={choice!r}: use auto, llama-server or llama-cpp-python"
        )
    binary = find_llama_server(cfg)
    return LlamaServer(cfg, binary) if binary else LlamaCppPythonServer(cfg)
