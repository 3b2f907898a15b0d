"""Answer the read-only commands without loading typer, click or rich.

``famous show-machine``, ``engines``, ``show-engine``, ``models``, ``status``, ``ps`` and
``list`` are what scripts and prompts call over and over; importing the Typer app costs
more than the answer. ``answer`` recognises exactly these commands with the options
their Typer definitions take, and calls the same views (``famous.cli.views``) the Typer
commands call, so the output is the same either way. Anything it does not recognise
(``--help``, an unknown option, a missing argument, a bad ``--format``) returns ``None``
and the Typer app answers, with its usage errors.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import NamedTuple

_FORMATS = ("table", "json", "yaml")


class Spec(NamedTuple):
    """A command's positional arguments (``?`` marks optional ones), flags and options."""

    positionals: tuple[str, ...]
    flags: dict[str, str]  # --all -> all_devices
    options: dict[str, str]  # --root -> root


_FORMAT = {"--format": "fmt", "-f": "fmt"}
_ROOT = {"--root": "root", **_FORMAT}

SPECS: dict[str, Spec] = {
    "show-machine": Spec((), {"--all": "all_devices"}, _ROOT),
    "engines": Spec(("model",), {}, _ROOT),
    "show-engine": Spec(("model", "engine?"), {}, _ROOT),
    "models": Spec((), {}, _FORMAT),
    "status": Spec((), {}, _FORMAT),
    "ps": Spec((), {}, _FORMAT),
    "list": Spec(("model?",), {}, _FORMAT),
}


def parse(argv: list[str]) -> tuple[str, dict[str, object]] | None:
    """(command, its arguments) when ``argv`` is a read-only command this module answers."""
    if not argv or argv[0] not in SPECS:
        return None
    spec = SPECS[argv[0]]
    values: dict[str, object] = {name: None for name in spec.options.values()}
    values.update({name: False for name in spec.flags.values()})
    positionals: list[str] = []
    rest = iter(argv[1:])
    for token in rest:
        if not token.startswith("-") or token == "-":
            positionals.append(token)
            continue
        name, eq, value = token.partition("=") if token.startswith("--") else (token, "", "")
        if name in spec.flags and not eq:
            values[spec.flags[name]] = True
        elif name in spec.options:
            value = value if eq else next(rest, None)
            if value is None or (not eq and value.startswith("-")):
                return None
            values[spec.options[name]] = value
        else:
            return None  # --help, an unknown option, "--": the Typer app answers
    if not _bind(spec, positionals, values):
        return None
    values["fmt"] = values["fmt"] or "table"
    if values["fmt"] not in _FORMATS:
        return None
    return argv[0], values


def _bind(spec: Spec, positionals: list[str], values: dict[str, object]) -> bool:
    if len(positionals) > len(spec.positionals):
        return False
    for i, name in enumerate(spec.positionals):
        optional = name.endswith("?")
        if i < len(positionals):
            if positionals[i] == "":
                return False
            values[name.rstrip("?")] = positionals[i]
        elif optional:
            values[name.rstrip("?")] = None
        else:
            return False
    return True


def _view(command: str) -> Callable[..., None]:
    from famous.cli.views import artifacts, deployments, machine, selection

    return {
        "show-machine": machine.show_machine,
        "engines": selection.engines,
        "show-engine": selection.show_engine,
        "models": selection.models,
        "status": deployments.status,
        "ps": deployments.ps,
        "list": artifacts.list_installed,
    }[command]


def answer(argv: list[str]) -> int | None:
    """Run ``argv`` when it is a read-only command and return its exit code, else None."""
    parsed = parse(argv)
    if parsed is None:
        return None
    command, values = parsed
    from famous.cli.errors import report
    from famous.cli.render import OutputFormat
    from famous.errors import FamousError, exit_code

    values["fmt"] = OutputFormat(values["fmt"])
    if command == "show-machine" and values.get("root") is not None:
        from pathlib import Path

        values["root"] = Path(str(values["root"]))
    try:
        _view(command)(**values)
    except FamousError as exc:
        report(exc)
        return exit_code(exc)
    return 0
