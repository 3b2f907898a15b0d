"""The runtime adapter: how famous installs-checks, launches, health-checks and stops an engine.

Every engine runs as its own process speaking OpenAI HTTP on a free 127.0.0.1 port, so a
crash of the engine never takes famous down. An adapter only builds the command line and
knows the health route; launching, waiting, logs and stopping are shared here.
"""

from __future__ import annotations

import contextlib
import importlib.util
import os
import signal
import socket
import subprocess
import sys
import time
from abc import ABC, abstractmethod
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, ClassVar

from famous.errors import FamousError, Incompatible, NotFound, Unavailable
from famous.store.deployments import log_path_for, tail


class EngineError(FamousError, RuntimeError):
    """Base of the errors an engine runtime raises."""


class UnknownRuntime(EngineError, NotFound):
    """An engine names a runtime famous has no adapter for."""


class RuntimeNotInstalled(EngineError, Incompatible):
    """The runtime's software is missing; the message carries the exact install command."""

    def __init__(self, runtime: str, missing: str, install_command: str) -> None:
        self.runtime = runtime
        self.missing = missing
        self.install_command = install_command
        super().__init__(
            f"the {runtime} runtime is not installed ({missing}); install it with: "
            f"{install_command}"
        )


class EngineStartError(EngineError, Unavailable):
    """The engine process exited or never became healthy; carries its last log lines."""

    def __init__(self, message: str, log_lines: list[str] | None = None) -> None:
        self.log_lines = log_lines or []
        text = message
        if self.log_lines:
            text += "\nlast log lines:\n" + "\n".join("  " + line for line in self.log_lines)
        super().__init__(text)


class HealthTimeout(EngineStartError):
    """The engine did not answer its health route in time."""


def _parent_death_signal() -> Any:
    """On Linux, a function for ``preexec_fn`` that makes the kernel send SIGTERM to the
    engine when the process that started it dies, even by ``kill -9``: no engine outlives
    its gateway. Resolved here, in the parent, so the child only makes one libc call."""
    if not sys.platform.startswith("linux"):
        return None
    try:
        import ctypes

        prctl = ctypes.CDLL(None, use_errno=True).prctl
    except (OSError, AttributeError):
        return None
    pr_set_pdeathsig = 1

    def die_with_parent() -> None:
        prctl(pr_set_pdeathsig, int(signal.SIGTERM), 0, 0, 0)

    return die_with_parent


DIE_WITH_PARENT = _parent_death_signal()

# what every engine but llama-server answers to POST /v1/rerank (see RuntimeAdapter.limits)
RERANK_ONLY_LLAMA_SERVER = (
    "rerank documents: famous serves rerankers (GGUFs with rank pooling) with llama.cpp's "
    "llama-server only"
)


def free_port(host: str = "127.0.0.1") -> int:
    """A port nothing listens on right now (the OS picks it)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind((host, 0))
        return sock.getsockname()[1]


def physical_cores() -> int:
    """Physical cores: llama.cpp decodes fastest with one thread per core, not per hyperthread."""
    try:
        import psutil

        return max(1, psutil.cpu_count(logical=False) or os.cpu_count() or 1)
    except Exception:
        return max(1, os.cpu_count() or 1)


def normalize_configuration(configuration: Mapping[str, Any] | None) -> dict[str, Any]:
    """Engine manifests write kebab-case keys (``ctx-size``); adapters read snake_case."""
    return {str(k).replace("-", "_").lower(): v for k, v in (configuration or {}).items()}


def missing_modules(modules: Iterable[str]) -> list[str]:
    """The modules of ``modules`` that Python cannot find (without importing them)."""
    missing = []
    for module in modules:
        try:
            found = importlib.util.find_spec(module) is not None
        except (ImportError, ValueError):
            found = False
        if not found:
            missing.append(module)
    return missing


def as_bool(value: Any) -> bool:
    if isinstance(value, str):
        return value.strip().lower() in ("1", "true", "yes", "on")
    return bool(value)


@dataclass(frozen=True)
class LaunchSpec:
    """What to serve and how: one model file or directory, under one name."""

    name: str
    model_path: Path
    configuration: Mapping[str, Any] = field(default_factory=dict)
    embedding: bool = False
    host: str = "127.0.0.1"
    port: int | None = None
    log_path: Path | None = None
    env: Mapping[str, str] | None = None


@dataclass
class EngineProcess:
    """A launched engine server: its process, where it listens, and where it logs."""

    name: str
    runtime: str
    server: str
    command: list[str]
    host: str
    port: int
    log_path: Path
    health_path: str
    popen: subprocess.Popen[bytes] | None = None
    pid_: int | None = None
    started_at: float = field(default_factory=time.time)
    unsupported: dict[str, str] = field(default_factory=dict)  # RuntimeAdapter.unsupported
    features: frozenset[str] = frozenset()  # RuntimeAdapter.launch_features
    adapt_request: Callable[[str, dict[str, Any]], dict[str, Any]] = field(
        default=lambda _kind, body: body
    )  # RuntimeAdapter.adapt_request
    reason: str = ""  # why this server runs (RuntimeAdapter.reason)
    #: where the engine's routes start on ``host:port`` ("" for an engine of its own; a Ray
    #: Serve application's route prefix, ``famous.serve.ray_serve``)
    path_prefix: str = ""

    @property
    def pid(self) -> int:
        return self.popen.pid if self.popen is not None else int(self.pid_ or 0)

    @property
    def base_url(self) -> str:
        return f"http://{self.host}:{self.port}"

    @property
    def health_url(self) -> str:
        return self.base_url + self.health_path

    def returncode(self) -> int | None:
        """The exit status once the process ended (reaping it), else None."""
        if self.popen is not None:
            return self.popen.poll()
        from famous.store.deployments import process_alive

        return None if process_alive(self.pid) else -1

    def alive(self) -> bool:
        return self.returncode() is None

    def log_tail(self, lines: int = 20) -> list[str]:
        return tail(self.log_path, lines)

    def placement(self) -> list[dict[str, Any]] | None:
        """Where the engine's replicas run, for an engine spread over a cluster; None for
        one process on this machine."""
        return None

    def _describe(self) -> str:
        return f"{self.server} for {self.name!r} (pid {self.pid}, port {self.port})"

    def _check_health_once(self, timeout: float = 2.0) -> bool:
        import urllib.error  # on use: listing a runtime's settings loads no HTTP client
        import urllib.request

        try:
            with urllib.request.urlopen(self.health_url, timeout=timeout) as resp:
                return 200 <= resp.status < 300
        except (urllib.error.URLError, OSError, ValueError):
            return False

    def healthy(self, timeout: float = 2.0) -> bool:
        """Ask the engine itself (not a stored status) whether it answers."""
        return self.alive() and self._check_health_once(timeout)

    def _died_error(self) -> EngineStartError:
        return EngineStartError(
            f"{self._describe()} exited with status {self.returncode()} before it was healthy",
            self.log_tail(),
        )

    def _timeout_error(self, timeout: float) -> HealthTimeout:
        return HealthTimeout(
            f"timed out after {timeout:.0f} s waiting for GET {self.health_url} to answer 200 "
            f"from {self._describe()}",
            self.log_tail(),
        )

    def wait_healthy(self, timeout: float = 120.0, interval: float = 0.1) -> None:
        """Block until the health route answers 200; raise with the log tail otherwise."""
        deadline = time.monotonic() + timeout
        while True:
            if not self.alive():
                raise self._died_error()
            if self._check_health_once(timeout=min(2.0, max(0.1, deadline - time.monotonic()))):
                return
            if time.monotonic() >= deadline:
                raise self._timeout_error(timeout)
            time.sleep(interval)

    async def wait_healthy_async(self, timeout: float = 120.0, interval: float = 0.1) -> None:
        """The same wait without blocking an event loop (the gateway loads while it serves)."""
        import httpx

        deadline = time.monotonic() + timeout
        async with httpx.AsyncClient(timeout=2.0, trust_env=False) as client:
            while True:
                if not self.alive():
                    raise self._died_error()
                try:
                    resp = await client.get(self.health_url)
                    if 200 <= resp.status_code < 300:
                        return
                except httpx.HTTPError:
                    pass
                if time.monotonic() >= deadline:
                    raise self._timeout_error(timeout)
                await _sleep(interval)

    def stop(self, grace: float = 10.0) -> int | None:
        """SIGTERM the engine's process group, SIGKILL it after ``grace`` seconds."""
        return stop_process(self.pid, grace, popen=self.popen)


def _signal_group(pid: int, sig: int) -> None:
    try:
        os.killpg(pid, sig)
    except (ProcessLookupError, PermissionError):
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.kill(pid, sig)


def stop_process(
    pid: int, grace: float = 10.0, popen: subprocess.Popen[bytes] | None = None
) -> int | None:
    """Stop a process famous started (it leads its own session): SIGTERM, wait, SIGKILL."""
    if pid <= 0:
        return None
    if popen is not None:
        if popen.poll() is not None:
            return popen.returncode
        _signal_group(pid, signal.SIGTERM)
        try:
            return popen.wait(timeout=grace)
        except subprocess.TimeoutExpired:
            _signal_group(pid, signal.SIGKILL)
            return popen.wait(timeout=10)
    from famous.store.deployments import process_alive

    if not process_alive(pid):
        return None
    _signal_group(pid, signal.SIGTERM)
    deadline = time.monotonic() + grace
    while time.monotonic() < deadline:
        if not process_alive(pid):
            return 0
        time.sleep(0.05)
    _signal_group(pid, signal.SIGKILL)
    return -signal.SIGKILL


class RuntimeAdapter(ABC):
    """One kind of engine server. Subclasses say how to check, command-line and health-check it."""

    #: runtime name used by engine manifests (``runtime: llamacpp``)
    runtime: ClassVar[str]
    #: which server program this adapter starts (shown by ``famous ps``)
    server: ClassVar[str]
    #: what a user runs when the runtime is missing
    install_command: ClassVar[str]
    #: the route that answers 200 once the model is loaded
    health_path: ClassVar[str] = "/v1/models"
    #: engine configuration keys this adapter understands, with what each does
    configuration_keys: ClassVar[dict[str, str]] = {}
    #: keys that name an executable or a path, or let a checkpoint run code: they come from
    #: the user's own configuration or an engine manifest, never from an HTTP request
    local_only_keys: ClassVar[frozenset[str]] = frozenset()
    #: request fields this server would get wrong (ignore, or answer with less than asked),
    #: each with what it cannot do: the gateway refuses them with a 400 instead
    unsupported: ClassVar[dict[str, str]] = {}
    #: what the gateway may build on: ``json_schema`` (a response_format schema constrains
    #: the answer, which the gateway's tool calls use); ``template_tools`` (the launch's chat
    #: template renders tools and the server parses the calls: see ``launch_features``)
    features: ClassVar[frozenset[str]] = frozenset()

    #: Python modules the server needs; the default install check looks for them
    required_modules: ClassVar[tuple[str, ...]] = ()

    def __init__(self, configuration: Mapping[str, Any] | None = None) -> None:
        self.configuration = normalize_configuration(configuration)
        #: why this server serves the model rather than another (``famous ps`` shows it)
        self.reason = ""

    def check_installed(self) -> None:
        """Raise RuntimeNotInstalled (with the install command) when the server cannot start."""
        missing = missing_modules(self.required_modules)
        if missing:
            raise RuntimeNotInstalled(
                self.runtime, f"Python module {', '.join(missing)} is missing", self.install_command
            )

    def limits(self, spec: LaunchSpec) -> dict[str, str]:
        """What this launch cannot serve: request fields (``unsupported``) and routes
        (``chat``, ``completions``, ``embeddings``, ``rerank``), each with what it cannot
        do. Only llama.cpp's adapters serve rerankers, so the others refuse rerank."""
        return {**self.unsupported, "rerank": RERANK_ONLY_LLAMA_SERVER}

    def launch_features(self, spec: LaunchSpec) -> frozenset[str]:
        """``features`` of this launch: what a server can do may depend on the model it
        serves (its chat template)."""
        return self.features

    def adapt_request(self, kind: str, body: dict[str, Any]) -> dict[str, Any]:
        """An OpenAI request body (``kind``: chat, completions, embeddings) as this server
        reads it; most read OpenAI's own."""
        return body

    def settings(self, spec: LaunchSpec) -> dict[str, Any]:
        """The engine's configuration, overridden by what this launch asks for."""
        return {**self.configuration, **normalize_configuration(spec.configuration)}

    @abstractmethod
    def command(self, spec: LaunchSpec, port: int) -> list[str]:
        """The argv that serves ``spec`` on ``spec.host:port``."""

    def worker_argv(self, spec: LaunchSpec, port: int) -> list[str]:
        """The start of the command line of a famous worker module (``self.server``): every
        one takes the flags of ``openai_app.worker_parser``."""
        return [
            sys.executable,
            "-m",
            self.server,
            "--model",
            str(spec.model_path),
            "--served-model-name",
            spec.name,
            "--host",
            spec.host,
            "--port",
            str(port),
        ]

    def environment(self, spec: LaunchSpec) -> dict[str, str]:
        env = dict(os.environ)
        env.update(spec.env or {})
        return env

    @classmethod
    def request_configuration(cls, configuration: Any) -> dict[str, Any]:
        """``configuration`` as an HTTP request may give it: an object of known, request-safe
        keys with scalar values; ValueError names the first key that is not."""
        if configuration is None:
            return {}
        if not isinstance(configuration, dict):
            raise ValueError("configuration must be an object of engine settings")
        checked: dict[str, Any] = {}
        for key, value in configuration.items():
            name = str(key).replace("-", "_").lower()
            if name in cls.local_only_keys:
                raise ValueError(
                    f"configuration.{key} can only be set in famous's own configuration "
                    f"(famous set {key}=…), not through the API"
                )
            if name not in cls.configuration_keys:
                known = ", ".join(sorted(set(cls.configuration_keys) - cls.local_only_keys))
                raise ValueError(
                    f"configuration.{key} is not a {cls.runtime} setting; known: {known}"
                )
            if not isinstance(value, str | int | float | bool) or (
                isinstance(value, str) and (len(value) > 256 or not value.isprintable())
            ):
                raise ValueError(
                    f"configuration.{key} must be a number, a boolean or a short printable string"
                )
            checked[name] = value
        return checked

    def unknown_keys(self, configuration: Mapping[str, Any]) -> list[str]:
        known = set(self.configuration_keys)
        return sorted(k for k in normalize_configuration(configuration) if k not in known)

    def launch(self, spec: LaunchSpec) -> EngineProcess:
        """Start the server in its own session, stdout and stderr appended to its log file."""
        self.check_installed()
        if not Path(spec.model_path).exists():
            raise EngineStartError(f"model file {spec.model_path} does not exist")
        port = spec.port or free_port(spec.host)
        log_path = Path(spec.log_path or log_path_for(spec.name))
        log_path.parent.mkdir(parents=True, exist_ok=True)
        argv = self.command(spec, port)
        with open(log_path, "ab") as log:
            header = f"\n==> {time.strftime('%Y-%m-%d %H:%M:%S')} famous starts: {' '.join(argv)}\n"
            log.write(header.encode())
            ignored = self.unknown_keys(spec.configuration)
            if ignored:
                log.write(f"==> configuration keys ignored by {self.server}: {ignored}\n".encode())
            log.flush()
            popen = subprocess.Popen(
                argv,
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
                env=self.environment(spec),
                start_new_session=True,  # its own group: Ctrl-C on famous does not hit it
                close_fds=True,
                preexec_fn=DIE_WITH_PARENT,  # the thread that launches lives as long as famous
            )
        return EngineProcess(
            name=spec.name,
            runtime=self.runtime,
            server=self.server,
            command=argv,
            host=spec.host,
            port=port,
            log_path=log_path,
            health_path=self.health_path,
            popen=popen,
            unsupported=self.limits(spec),
            features=self.launch_features(spec),
            adapt_request=self.adapt_request,
            reason=self.reason,
        )


async def _sleep(seconds: float) -> None:
    """``asyncio.sleep``, imported on use: listing a runtime's settings loads no asyncio."""
    import asyncio

    await asyncio.sleep(seconds)
