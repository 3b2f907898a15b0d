"""llama.cpp: GGUF models through the native ``llama-server``, or llama-cpp-python's server.

``llama-server`` batches concurrent requests over parallel slots, which llama-cpp-python's
server does not (it serializes them), so famous prefers it whenever one is configured, on
PATH, or built for this machine (``famous run`` builds it the first time, or ``famous
install-component llama-server``). Each adapter says why it was chosen (``reason``), which
``famous ps`` shows.

A GGUF with rank pooling (a bge-reranker or jina-reranker conversion) is a reranker: only
``llama-server`` serves it (``--reranking``, ``POST /v1/rerank``), and it serves nothing else.
"""

from __future__ import annotations

import functools
import importlib.util
import os
import re
import shutil
import subprocess
import sys
from collections.abc import Mapping
from pathlib import Path
from typing import Any, ClassVar

from famous.formats import gguf_meta
from famous.formats.projector import projector_beside
from famous.runtimes import components
from famous.runtimes.base import (
    EngineStartError,
    LaunchSpec,
    RuntimeAdapter,
    RuntimeNotInstalled,
    as_bool,
    normalize_configuration,
    physical_cores,
)
from famous.runtimes.keys import LLAMACPP_KEYS

LLAMACPP_INSTALL = (
    "famous install-component llama-server (needs a C++ toolchain and CMake), or "
    "pip install 'famous[llamacpp]' (llama-cpp-python's server)"
)
LLAMA_SERVER_INSTALL = "famous install-component llama-server"
DEFAULT_CONTEXT = 4096
LLAMA_SERVER_REPEAT_PENALTY = 1.0  # llama.cpp's documented default (common_params_sampling)
# llama-cpp-python's chat formats that prompt with the tools and parse the model's calls
FUNCTION_CALLING_FORMATS = frozenset(
    {"chatml-function-calling", "functionary", "functionary-v1", "functionary-v2"}
)

NO_PROJECTOR = (
    "read images: this model has no vision projector (pull a repo that ships an "
    "mmproj-*.gguf, or set mmproj to one)"
)


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


def _projector(cfg: Mapping[str, Any], model: Path) -> Path | None:
    """The vision projector: the configured ``mmproj`` (``none`` for no vision), else the
    one a pull put beside the GGUF (``famous.formats.projector``)."""
    configured = _pick(cfg, "mmproj")
    if configured is None:
        return projector_beside(Path(model))
    if str(configured).strip().lower() in ("", "none", "off", "false", "0"):
        return None
    return Path(str(configured)).expanduser()


class _LlamaCppBase(RuntimeAdapter):
    runtime: ClassVar[str] = "llamacpp"
    configuration_keys: ClassVar[dict[str, str]] = LLAMACPP_KEYS
    local_only_keys: ClassVar[frozenset[str]] = frozenset(
        {"llama_server_path", "draft_model", "mmproj"}
    )
    features: ClassVar[frozenset[str]] = frozenset({"json_schema"})

    def _metadata(self, spec: LaunchSpec) -> dict[str, Any]:
        """Read once per file: a launch asks for its settings several times."""
        return gguf_meta.cached_metadata(spec.model_path)

    def limits(self, spec: LaunchSpec) -> dict[str, str]:
        """A chat model's engine serves no embeddings (llama.cpp answers 500 or 501), an
        embedding model's no text, a reranker's nothing but rerank (llama.cpp answers 500
        or vectors of nulls), and only a reranker's rerank."""
        limits = super().limits(spec)
        settings = self.settings(spec)
        if settings["reranking"]:
            what = "it serves a reranker (POST /v1/rerank)"
            limits.update(
                chat=f"generate text: {what}",
                completions=f"generate text: {what}",
                embeddings=f"compute embeddings: {what}",
            )
            limits.pop("rerank", None)
            return limits
        if settings["embedding"]:
            text = "generate text: it serves an embedding model"
            limits.update(chat=text, completions=text)
        else:
            limits["embeddings"] = (
                "compute embeddings: it serves a text-generation model (use an embedding "
                "model, or register this file with embedding: true)"
            )
        kind = "an embedding" if settings["embedding"] else "a text-generation"
        limits["rerank"] = (
            f"rerank documents: it serves {kind} model (use a reranker: a GGUF with rank "
            "pooling, or register this file with reranking: true)"
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
        pooling = _pick(cfg, "pooling", "pooling_type") or gguf_meta.pooling_type(meta)
        reranking = as_bool(_pick(cfg, "reranking", default=False)) or pooling == "rank"
        return {
            "ctx": int(ctx),
            "threads": int(_pick(cfg, "threads", "n_threads", default=physical_cores())),
            "batch": _pick(cfg, "batch_size", "n_batch"),
            "ubatch": _pick(cfg, "ubatch_size", "n_ubatch"),
            "gpu_layers": _pick(cfg, "n_gpu_layers", "gpu_layers", "ngl"),
            "flash_attn": _flash_attn(_pick(cfg, "flash_attn", "fa")),
            "parallel": _pick(cfg, "parallel", "n_parallel", "np"),
            "kv_per_token": gguf_meta.kv_bytes_per_token(meta),
            "cache_reuse": _pick(cfg, "cache_reuse"),
            "draft_model": _pick(cfg, "draft_model", "model_draft"),
            "draft_max": _pick(cfg, "draft_max"),
            "chat_format": _pick(cfg, "chat_format"),
            "chat_template": _pick(cfg, "chat_template"),
            "has_template": gguf_meta.has_chat_template(meta),
            "template_tools": gguf_meta.template_renders_tools(meta),
            "embedding": embedding or reranking,
            "reranking": reranking,
            "pooling": pooling,
            "seed": _pick(cfg, "seed"),
            "projector": _projector(cfg, spec.model_path),
        }


def _text_or_empty(message: Any) -> Any:
    if (
        isinstance(message, dict)
        and message.get("role") == "assistant"
        and ("content" not in message or message["content"] is None)
    ):
        return {**message, "content": ""}
    return message


class LlamaCppPythonServer(_LlamaCppBase):
    """``python -m llama_cpp.server`` (llama-cpp-python's FastAPI server)."""

    server: ClassVar[str] = "llama_cpp.server"
    unsupported: ClassVar[dict[str, str]] = {
        "n": "return several choices (n > 1): it answers one; llama.cpp's own server can "
        "(famous install-component llama-server)",
    }

    def adapt_request(self, kind: str, body: dict[str, Any]) -> dict[str, Any]:
        """What llama-cpp-python reads differently from llama.cpp's own server:

        - its repeat_penalty defaults to 1.1 where llama-server's (and OpenAI's absence of
          one) is 1.0, so the same request would sample differently; famous sends 1.0;
        - an assistant turn of tool calls has ``content: null`` in OpenAI's API; its server
          answers that with a 500, so famous sends an empty text;
        - OpenAI's ``response_format: {type: json_schema, json_schema: {schema}}`` is its
          ``{type: json_object, schema}`` (it refuses the first with a 500)."""
        if kind not in ("chat", "completions"):
            return body
        body = {"repeat_penalty": LLAMA_SERVER_REPEAT_PENALTY, **body}
        if kind == "chat" and isinstance(body.get("messages"), list):
            body["messages"] = [_text_or_empty(m) for m in body["messages"]]
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

    def limits(self, spec: LaunchSpec) -> dict[str, str]:
        """llama-cpp-python's server has no rerank route and reads no images here (its
        LLaVA chat handlers need a per-family ``chat_format``): both need llama-server."""
        limits = super().limits(spec)
        limits["images"] = (
            "read images: famous serves vision models (GGUF + mmproj projector) with llama.cpp's "
            f"llama-server only ({LLAMA_SERVER_INSTALL})"
        )
        if self.settings(spec)["reranking"]:
            limits["rerank"] = (
                "rerank documents: llama-cpp-python's server has no rerank route; serve "
                f"rerankers with llama.cpp's llama-server ({LLAMA_SERVER_INSTALL})"
            )
        return limits

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

    def limits(self, spec: LaunchSpec) -> dict[str, str]:
        """A text model reads images only with a vision projector (``--mmproj``)."""
        limits = super().limits(spec)
        settings = self.settings(spec)
        if settings["projector"] is None and not settings["embedding"]:
            limits["images"] = NO_PROJECTOR
        return limits

    def check_installed(self) -> None:
        if self.binary is None or not os.access(self.binary, os.X_OK):
            raise RuntimeNotInstalled(
                "llamacpp", "no llama-server binary found", self.install_command
            )

    def _draft_arguments(self, draft: str, draft_max: Any) -> list[str]:
        """Speculative decoding with ``draft``. 2026's llama.cpp renamed the flags and wants
        the kind named (``--spec-type draft-simple``); a llama-server on PATH may be older."""
        known = program_flags(self.binary) if self.binary else frozenset()
        argv = ["--model-draft", str(draft_path(draft))]
        if "--spec-type" in known:
            argv += ["--spec-type", "draft-simple"]
        if draft_max is not None:
            flag = "--spec-draft-n-max" if "--spec-draft-n-max" in known else "--draft-max"
            argv += [flag, str(int(draft_max))]
        return argv

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
        slots = int(s["parallel"]) if s["parallel"] is not None else None
        if slots is None and not s["embedding"]:
            slots = auto_slots(s["kv_per_token"], s["ctx"])
        if slots is not None and slots > 0:
            # every slot gets the whole context: the KV cache is slots × context
            argv[argv.index("--ctx-size") + 1] = str(s["ctx"] * slots)
            argv += ["--parallel", str(slots)]
        if s["cache_reuse"] is not None:
            argv += ["--cache-reuse", str(int(s["cache_reuse"]))]
        if s["draft_model"]:
            argv += self._draft_arguments(str(s["draft_model"]), s["draft_max"])
        if s["reranking"]:
            argv += ["--reranking"]  # embeddings with rank pooling, and the rerank routes
        elif s["embedding"]:
            argv += ["--embeddings", "--pooling", str(s["pooling"] or "mean")]
        else:
            argv += ["--jinja"]
            argv += _projector_flag(s["projector"])
            if s["chat_template"]:
                argv += ["--chat-template", str(s["chat_template"])]
            elif not s["has_template"]:
                argv += ["--chat-template", "chatml"]
        if s["seed"] is not None:
            argv += ["--seed", str(s["seed"])]
        return argv


def _projector_flag(projector: Path | None) -> list[str]:
    if projector is None:
        return []
    if not projector.is_file():
        raise EngineStartError(f"mmproj {projector} is not a file: set mmproj to a projector GGUF")
    return ["--mmproj", str(projector)]


MAX_AUTO_SLOTS = 8
SLOT_MEMORY_SHARE = 0.10  # of the machine's memory, for the KV cache of the slots


def _physical_memory() -> int | None:
    try:
        return os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")
    except (ValueError, OSError, AttributeError):
        return None


def auto_slots(kv_per_token: int | None, context: int, memory: int | None = None) -> int | None:
    """How many requests llama-server decodes together: as many slots of ``context`` tokens
    as ``SLOT_MEMORY_SHARE`` of the memory holds the KV cache of, 1 to ``MAX_AUTO_SLOTS``;
    None (llama-server's own default) when the GGUF does not give its shape."""
    memory = memory or _physical_memory()
    if not kv_per_token or not memory or context <= 0:
        return None
    fits = int(memory * SLOT_MEMORY_SHARE) // (kv_per_token * context)
    return max(1, min(MAX_AUTO_SLOTS, fits))


@functools.lru_cache(maxsize=16)
def _flags_of(binary: str, mtime_ns: int) -> frozenset[str]:
    del mtime_ns  # the cache key: a rebuilt binary is asked again
    try:
        result = subprocess.run(
            [binary, "--help"], capture_output=True, text=True, timeout=20, stdin=subprocess.DEVNULL
        )
    except (OSError, subprocess.SubprocessError):
        return frozenset()
    return frozenset(re.findall(r"(?<![\w-])(--[a-z][a-z0-9-]+)", result.stdout + result.stderr))


def program_flags(binary: Path) -> frozenset[str]:
    """The long options a llama-server binary lists in its ``--help`` (llama.cpp renames
    some from one version to the next)."""
    try:
        return _flags_of(str(binary), binary.stat().st_mtime_ns)
    except OSError:
        return frozenset()


def draft_path(draft: str) -> Path:
    """The GGUF a ``draft-model`` setting names: a file, or an installed model's artifact."""
    path = Path(draft).expanduser()
    if path.is_file():
        return path
    from famous.store.artifacts import list_artifacts

    for artifact in list_artifacts(draft):
        found = Path(artifact.path)
        if found.is_file() and found.suffix.lower() == ".gguf":
            return found
    raise EngineStartError(
        f"draft-model {draft!r} is neither a GGUF file nor an installed GGUF model; "
        f"pull it first (famous pull {draft}) or set draft-model to a file"
    )


def backend(configuration: Mapping[str, Any] | None = None) -> str:
    """The llama.cpp build an engine asks for (``backend``; cpu unless its manifest says)."""
    value = str(normalize_configuration(configuration).get("backend") or "cpu").lower()
    if value not in components.GPU_FLAGS:
        raise ValueError(
            f"configuration backend={value!r}: use one of {', '.join(components.GPU_FLAGS)}"
        )
    return value


def locate_llama_server(configuration: Mapping[str, Any] | None = None) -> tuple[Path, str] | None:
    """A llama-server binary and where it was found: the configured path,
    $FAMOUS_LLAMA_SERVER, famous's build for this machine, or PATH."""
    cfg = normalize_configuration(configuration)
    build = components.installed_llama_server(backend(cfg))
    for candidate, why in (
        (cfg.get("llama_server_path"), "llama-server-path is configured"),
        (os.environ.get("FAMOUS_LLAMA_SERVER"), "FAMOUS_LLAMA_SERVER names it"),
        (build, "famous's build for this machine"),
        (shutil.which("llama-server"), "found on PATH"),
    ):
        if candidate and Path(candidate).is_file() and os.access(candidate, os.X_OK):
            return Path(candidate), f"{why} ({candidate})"
    return None


def find_llama_server(configuration: Mapping[str, Any] | None = None) -> Path | None:
    found = locate_llama_server(configuration)
    return found[0] if found else None


def server_choice(configuration: Mapping[str, Any] | None = None) -> tuple[str, str]:
    """(auto | llama-server | llama-cpp-python, what set it)."""
    cfg = normalize_configuration(configuration)
    if cfg.get("server"):
        raw, source = str(cfg["server"]), f"server={cfg['server']} is configured"
    elif os.environ.get("FAMOUS_LLAMACPP_SERVER"):
        raw = os.environ["FAMOUS_LLAMACPP_SERVER"]
        source = f"FAMOUS_LLAMACPP_SERVER={raw}"
    else:
        raw, source = "auto", "the default"
    choice = raw.strip().lower()
    if choice in ("llama-server", "native"):
        return "llama-server", source
    if choice in ("llama-cpp-python", "llama_cpp.server", "python"):
        return "llama-cpp-python", source
    if choice != "auto":
        raise ValueError(
            f"configuration server={raw!r}: use auto, llama-server or llama-cpp-python"
        )
    return "auto", source


def not_built_reason(configuration: Mapping[str, Any] | None = None) -> str:
    minutes = max(1, round(components.estimate_seconds() / 60))
    return (
        f"llama-server is not built for this machine yet ({backend(configuration)}): "
        f"{LLAMA_SERVER_INSTALL} takes about {minutes} min, and famous run does it the first "
        "time unless llama-server.build is never"
    )


def llamacpp_adapter(configuration: Mapping[str, Any] | None = None) -> _LlamaCppBase:
    """The llama.cpp server to use under this configuration (``server: auto`` prefers native),
    with ``reason`` saying why. ``FAMOUS_LLAMACPP_SERVER`` sets the choice for engines whose
    configuration does not."""
    cfg = normalize_configuration(configuration)
    choice, source = server_choice(cfg)
    if choice == "llama-cpp-python":
        adapter: _LlamaCppBase = LlamaCppPythonServer(cfg)
        adapter.reason = source
        return adapter
    found = locate_llama_server(cfg)
    if found is None and choice == "auto":
        adapter = LlamaCppPythonServer(cfg)
        adapter.reason = not_built_reason(cfg)
        return adapter
    adapter = LlamaServer(cfg, found[0] if found else None)
    adapter.reason = found[1] if found else source
    return adapter
