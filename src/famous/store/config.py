"""Layered configuration: package < engine < user < environment < flag.

- package: famous's own defaults (``DEFAULTS``), the same for every model;
- engine: the selected engine manifest's ``configuration``;
- user: ``famous set`` (``FAMOUS_HOME/config.yaml``), globally or for one model;
- environment: ``FAMOUS_<KEY>`` with dots and dashes as underscores (``FAMOUS_HTTP_PORT``);
- flag: ``--set key=value`` on commands that take it.

A value's type is its default's type (int, float, bool or str), so ``famous set`` rejects
``http.port=eighty`` before writing anything.
"""

from __future__ import annotations

import os
from collections.abc import Iterable, Mapping
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Literal

from famous.errors import FamousError, NotFound
from famous.store.paths import user_config_path

Value = str | int | float | bool
Layer = Literal["package", "engine", "runtime", "user", "environment", "flag"]

# Settings of famous itself; engines add their own keys through their manifests.
DEFAULTS: dict[str, Value] = {
    "http.host": "127.0.0.1",
    "http.port": 8324,
    "keep-alive": 300,  # seconds an idle deployment stays loaded
    "max-loaded-models": 3,
    "startup-timeout": 300,  # seconds to wait for an engine to become healthy
    "offline": False,
    "llama-server.build": "auto",
    "selection.measured": True,
    "selection.objective": "decode",
}

DESCRIPTIONS: dict[str, str] = {
    "http.host": "address the gateway binds (an API key is required beyond 127.0.0.1)",
    "http.port": "port of the gateway",
    "keep-alive": "seconds an idle model stays loaded before it is unloaded",
    "max-loaded-models": "models kept loaded at once (least recently used is evicted)",
    "startup-timeout": "seconds to wait for an engine to report healthy",
    "offline": "never contact the Hub; use only what is in the catalog",
    "llama-server.build": "auto: famous run / pull build llama.cpp's llama-server for this "
    "machine the first time a GGUF model needs it (minutes, once) | never: keep llama_cpp.server",
    "selection.measured": "rank engines by `famous bench`'s measurements of this machine, "
    "when there are any (false: by manifest score alone)",
    "selection.objective": "what measured selection maximises: decode (tok/s at one stream) | "
    "throughput (tok/s over several streams) | ttft (time to first token, lowest wins)",
}


class ConfigError(FamousError, ValueError):
    """A configuration value or file famous cannot use."""


class UnknownKey(ConfigError, NotFound, LookupError):
    def __init__(self, key: str, known: list[str]):
        super().__init__(f"unknown configuration key {key!r}; known keys: {', '.join(known)}")


@dataclass(kw_only=True)
class Setting:
    """A key's effective value; None with layer "runtime": the runtime's own default."""

    key: str
    value: Value | None
    layer: Layer


def env_name(key: str) -> str:
    return "FAMOUS_" + key.upper().replace(".", "_").replace("-", "_")


def coerce(key: str, raw: Value, like: Value | None) -> Value:
    """Convert ``raw`` (often a string from the CLI or environment) to ``like``'s type.

    A key with no default (a runtime's own setting) takes the YAML scalar ``raw`` spells.
    """
    if like is None:
        if not isinstance(raw, str):
            return raw
        import yaml

        parsed = yaml.safe_load(raw) if raw.strip() else raw
        return parsed if isinstance(parsed, str | int | float | bool) else raw
    if isinstance(like, bool):
        if isinstance(raw, bool):
            return raw
        text = str(raw).strip().lower()
        if text in ("1", "true", "yes", "on"):
            return True
        if text in ("0", "false", "no", "off"):
            return False
        raise ConfigError(f"{key} expects true or false, got {raw!r}")
    if isinstance(like, int):
        try:
            return int(str(raw).strip())
        except ValueError:
            raise ConfigError(f"{key} expects a whole number, got {raw!r}") from None
    if isinstance(like, float):
        try:
            return float(str(raw).strip())
        except ValueError:
            raise ConfigError(f"{key} expects a number, got {raw!r}") from None
    return str(raw)


def _scalars(data: Any, where: str) -> dict[str, Value]:
    """A mapping of keys to str / int / float / bool values, as ``famous set`` writes."""
    if not isinstance(data, dict):
        raise ValueError(f"{where}: expected a mapping of keys to values, got {data!r}")
    for key, value in data.items():
        if not isinstance(key, str) or not isinstance(value, str | int | float | bool):
            raise ValueError(f"{where}.{key}: expected a string, number or boolean, got {value!r}")
    return dict(data)


@dataclass(kw_only=True)
class UserConfig:
    """What ``famous set`` wrote: global values, and per-model values."""

    values: dict[str, Value] = field(default_factory=dict)
    models: dict[str, dict[str, Value]] = field(default_factory=dict)

    @classmethod
    def from_data(cls, data: Any) -> UserConfig:
        """Check a parsed file: only ``values`` and ``models``, each of scalars."""
        if not isinstance(data, dict):
            raise ValueError(f"expected a mapping with values and models, got {data!r}")
        unknown = sorted(set(data) - {"values", "models"})
        if unknown:
            raise ValueError(f"unknown key(s) {', '.join(map(str, unknown))} (values, models)")
        models = data.get("models") or {}
        if not isinstance(models, dict):
            raise ValueError(f"models: expected a mapping of model names, got {models!r}")
        return cls(
            values=_scalars(data.get("values") or {}, "values"),
            models={str(m): _scalars(v, f"models.{m}") for m, v in models.items()},
        )

    @classmethod
    def load(cls, path: Path | None = None) -> UserConfig:
        path = path or user_config_path()
        if not path.is_file():
            return cls()
        import yaml

        try:
            data = yaml.safe_load(path.read_text(encoding="utf-8")) or {}
            return cls.from_data(data)
        except (yaml.YAMLError, ValueError) as exc:
            raise ConfigError(f"{path} is not a valid famous configuration: {exc}") from exc

    def save(self, path: Path | None = None) -> None:
        """Write atomically (temp file + rename) so a crash never leaves half a file."""
        path = path or user_config_path()
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_suffix(".yaml.tmp")
        import yaml

        tmp.write_text(yaml.safe_dump(asdict(self), sort_keys=True), encoding="utf-8")
        os.replace(tmp, path)


def resolve(
    engine_config: Mapping[str, Value] | None = None,
    model: str | None = None,
    flags: Mapping[str, Value] | None = None,
    user: UserConfig | None = None,
    environ: Mapping[str, str] | None = None,
    runtime_keys: Iterable[str] = (),
) -> dict[str, Setting]:
    """Every known key with its effective value and the layer it came from.

    ``runtime_keys``: settings the engine's runtime understands beyond its manifest's
    ``configuration`` (unset unless a user, environment or flag layer gives them).
    """
    environ = os.environ if environ is None else environ
    user = user if user is not None else UserConfig.load()
    settings = {k: Setting(key=k, value=v, layer="package") for k, v in DEFAULTS.items()}
    for key in runtime_keys:
        settings.setdefault(key, Setting(key=key, value=None, layer="runtime"))
    for key, value in (engine_config or {}).items():
        settings[key] = Setting(key=key, value=value, layer="engine")
    layers: list[tuple[Layer, Mapping[str, Value]]] = [
        ("user", user.values),
        ("user", user.models.get(model, {}) if model else {}),
        ("environment", {k: environ[env_name(k)] for k in settings if env_name(k) in environ}),
        ("flag", flags or {}),
    ]
    for layer, values in layers:
        for key, raw in values.items():
            if key not in settings:
                continue  # a key of another engine, kept for when that engine is chosen
            value = coerce(key, raw, settings[key].value)
            settings[key] = Setting(key=key, value=value, layer=layer)
    return settings


def known_keys(
    engine_config: Mapping[str, Value] | None = None, runtime_keys: Iterable[str] = ()
) -> list[str]:
    return sorted({*DEFAULTS, *runtime_keys, *(engine_config or {})})


def defaults_for(
    engine_config: Mapping[str, Value] | None = None, runtime_keys: Iterable[str] = ()
) -> dict[str, Value | None]:
    """Every settable key and its default (None: the runtime decides)."""
    return {**dict.fromkeys(runtime_keys), **DEFAULTS, **(engine_config or {})}


def set_value(
    key: str,
    raw: str,
    model: str | None = None,
    engine_config: Mapping[str, Value] | None = None,
    path: Path | None = None,
    runtime_keys: Iterable[str] = (),
) -> Value:
    """Validate then persist one user value; nothing is written when validation fails."""
    defaults = defaults_for(engine_config, runtime_keys)
    if key not in defaults:
        raise UnknownKey(key, known_keys(engine_config, runtime_keys))
    value = coerce(key, raw, defaults[key])
    config = UserConfig.load(path)
    if model:
        config.models.setdefault(model, {})[key] = value
    else:
        config.values[key] = value
    config.save(path)
    return value


def unset_value(key: str, model: str | None = None, path: Path | None = None) -> bool:
    """Remove a user value (back to the lower layers); True when one was removed."""
    config = UserConfig.load(path)
    scope = config.models.get(model, {}) if model else config.values
    if key not in scope:
        return False
    del scope[key]
    if model and not scope:
        config.models.pop(model, None)
    config.save(path)
    return True
