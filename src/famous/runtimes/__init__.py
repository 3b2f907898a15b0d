"""Engine runtimes: one adapter per kind of engine server (see ``base.RuntimeAdapter``).

``get_runtime(name, configuration)`` is the one entry point the supervisor uses; a new
runtime (MLX, vLLM, transformers, OpenVINO) registers a factory in ``RUNTIMES`` and its
configuration keys in ``keys.RUNTIME_KEYS``. The adapters load on first use.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from famous.runtimes.base import RuntimeAdapter

RuntimeFactory = Callable[[Mapping[str, Any] | None], "RuntimeAdapter"]


def _llamacpp(configuration: Mapping[str, Any] | None) -> RuntimeAdapter:
    from famous.runtimes.llamacpp import llamacpp_adapter

    return llamacpp_adapter(configuration)


def _native(configuration: Mapping[str, Any] | None) -> RuntimeAdapter:
    from famous.runtimes.native import FamousNativeServer

    return FamousNativeServer(configuration)


def _mlx(configuration: Mapping[str, Any] | None) -> RuntimeAdapter:
    from famous.runtimes.mlx import MlxServer

    return MlxServer(configuration)


def _vllm(configuration: Mapping[str, Any] | None) -> RuntimeAdapter:
    from famous.runtimes.vllm import VllmServer

    return VllmServer(configuration)


def _transformers(configuration: Mapping[str, Any] | None) -> RuntimeAdapter:
    from famous.runtimes.transformers import TransformersServer

    return TransformersServer(configuration)


def _openvino(configuration: Mapping[str, Any] | None) -> RuntimeAdapter:
    from famous.runtimes.openvino import OpenVINOServer

    return OpenVINOServer(configuration)


def _llamacpp_ampere(configuration: Mapping[str, Any] | None) -> RuntimeAdapter:
    from famous.runtimes.ampere import AmpereLlamaCppServer

    return AmpereLlamaCppServer(configuration)


def _executorch(configuration: Mapping[str, Any] | None) -> RuntimeAdapter:
    from famous.runtimes.edge import ExecuTorchServer

    return ExecuTorchServer(configuration)


def _litert(configuration: Mapping[str, Any] | None) -> RuntimeAdapter:
    from famous.runtimes.edge import LiteRTServer

    return LiteRTServer(configuration)


RUNTIMES: dict[str, RuntimeFactory] = {
    "llamacpp": _llamacpp,
    "famous-native": _native,
    "mlx": _mlx,
    "vllm": _vllm,
    "transformers": _transformers,
    "openvino": _openvino,
    "llamacpp-ampere": _llamacpp_ampere,
    "executorch": _executorch,
    "litert": _litert,
}


def get_runtime(name: str, configuration: Mapping[str, Any] | None = None) -> RuntimeAdapter:
    """The adapter for runtime ``name`` configured with the engine's ``configuration``."""
    from famous.runtimes.base import UnknownRuntime

    try:
        factory = RUNTIMES[name]
    except KeyError:
        raise UnknownRuntime(
            f"no runtime adapter named {name!r}; famous knows {', '.join(sorted(RUNTIMES))}"
        ) from None
    return factory(configuration)


# The adapters' shared vocabulary, imported on first use: what only lists runtimes or reads
# their configuration keys (famous.runtimes.keys) does not pay for subprocess and the store.
_FROM_BASE = frozenset(
    {
        "EngineError",
        "EngineProcess",
        "EngineStartError",
        "HealthTimeout",
        "LaunchSpec",
        "RuntimeAdapter",
        "RuntimeNotInstalled",
        "UnknownRuntime",
        "free_port",
        "stop_process",
    }
)


def __getattr__(name: str) -> Any:
    if name in _FROM_BASE:
        from famous.runtimes import base

        return getattr(base, name)
    raise AttributeError(f"module 'famous.runtimes' has no attribute {name!r}")


__all__ = ["RUNTIMES", "get_runtime", *sorted(_FROM_BASE)]
