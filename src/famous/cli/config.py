"""Configuration: get, set, unset (layers: package < engine < user < environment < flag)."""

from __future__ import annotations

import typer

from famous.cli.errors import handle_errors
from famous.cli.options import FormatOption
from famous.cli.render import OutputFormat, emit, print_table
from famous.errors import InvalidInput

ModelOption = typer.Option(
    None, "--model", "-m", help="Scope to a model: its engine's keys, values set for it."
)


def _engine_config(model: str | None) -> tuple[dict, list[str]]:
    """The engine configuration ``--model`` scopes to, and its runtime's other keys."""
    from famous.services.selection import every_runtime_key, scoped_configuration

    if model is None:
        return {}, every_runtime_key()
    return scoped_configuration(model)


@handle_errors
def get(
    key: str | None = typer.Argument(None, help="Key to read; all keys when omitted."),
    model: str | None = ModelOption,
    fmt: OutputFormat = FormatOption,
) -> None:
    """Print effective configuration values and the layer each comes from."""
    from famous.store.config import UnknownKey, known_keys, resolve

    engine_config, runtime_keys = _engine_config(model)
    settings = resolve(engine_config, model=model, runtime_keys=runtime_keys)
    if key is not None:
        if key not in settings:
            raise UnknownKey(key, known_keys(engine_config, runtime_keys))
        setting = settings[key]
        emit(setting, fmt, lambda: typer.echo(setting.value))
        return
    rows = sorted(settings.values(), key=lambda s: s.key)
    emit(
        {s.key: s.model_dump() for s in rows},
        fmt,
        lambda: print_table(["key", "value", "layer"], [(s.key, s.value, s.layer) for s in rows]),
    )


@handle_errors
def set_(
    assignment: list[str] = typer.Argument(..., help="KEY=VALUE, or KEY VALUE."),
    model: str | None = ModelOption,
) -> None:
    """Persist a user value (validated first; nothing is written on error)."""
    from famous.store.config import set_value

    if len(assignment) == 2 and "=" not in assignment[0]:
        pairs = [(assignment[0], assignment[1])]
    elif all("=" in a for a in assignment):
        pairs = [tuple(a.split("=", 1)) for a in assignment]
    else:
        raise InvalidInput("use KEY=VALUE [KEY=VALUE …] or KEY VALUE")
    from famous.store.config import UnknownKey, coerce, defaults_for, known_keys

    engine_config, runtime_keys = _engine_config(model)
    defaults = defaults_for(engine_config, runtime_keys)
    for key, raw in pairs:  # validate every pair before writing any
        if key not in defaults:
            raise UnknownKey(key, known_keys(engine_config, runtime_keys))
        coerce(key, raw, defaults[key])
    for key, raw in pairs:
        value = set_value(
            key, raw, model=model, engine_config=engine_config, runtime_keys=runtime_keys
        )
        scope = f" for {model}" if model else ""
        typer.echo(f"{key} = {value}{scope}")


@handle_errors
def unset(
    key: str = typer.Argument(..., help="Key to reset to its engine or package default."),
    model: str | None = ModelOption,
) -> None:
    """Remove a user value so the lower layers apply again."""
    from famous.store.config import unset_value

    removed = unset_value(key, model=model)
    scope = f" for {model}" if model else ""
    typer.echo(f"{key}: {'unset' if removed else 'was not set'}{scope}")


def register(app: typer.Typer) -> None:
    app.command("get")(get)
    app.command("set")(set_)
    app.command("unset")(unset)
