"""Model packages and engine selection: models, show-model, engines, show-engine, use-engine."""

from __future__ import annotations

from typing import TYPE_CHECKING

import typer

from famous.cli.errors import handle_errors
from famous.cli.options import FormatOption, RootOption
from famous.cli.render import OutputFormat, emit, print_fields, print_table
from famous.cli.views import selection as view
from famous.errors import InvalidInput
from famous.units import format_size

if TYPE_CHECKING:
    from famous.manifests.schema import ModelShape


@handle_errors
def models(fmt: OutputFormat = FormatOption) -> None:
    """List the model packages: built-in ones, then those built or added under FAMOUS_HOME."""
    view.models(fmt)


@handle_errors
def show_model(
    model: str = typer.Argument(..., help="A built-in package name or a package directory."),
    fmt: OutputFormat = FormatOption,
) -> None:
    """Show a model package: what it is, its variants, its engines, what is installed."""
    from famous.manifests.errors import PackageNotFound
    from famous.manifests.loader import find_package
    from famous.services.catalog import installed_rows, model_data

    try:
        package = find_package(model)
    except PackageNotFound:
        installed = installed_rows(model)  # a Hub repo pulled without a built-in package
        if not installed:
            raise
        emit({"model": model, "installed": installed}, fmt, lambda: _print_installed(installed))
        return
    data = model_data(package)
    installed = data["installed"]

    def table() -> None:
        m = package.model
        print_fields(
            [
                ("name", m.name),
                ("description", m.description),
                ("model-card", m.model_card),
                ("license", m.license),
                ("capabilities", ", ".join(m.capabilities)),
                ("parameters", _parameters(m.shape)),
                ("context", f"{m.shape.context} (max {m.shape.max_context or m.shape.context})"),
                ("engines", ", ".join(sorted(package.engines))),
                ("source", package.source),
            ]
        )
        print()
        rows = [
            (name, o.format, o.quantization, format_size(o.size), o.repo, ",".join(o.files[:2]))
            for name, o in m.options.items()
        ]
        print_table(["option", "format", "quantization", "size", "repo", "files"], rows)
        print()
        if not installed:
            print(f"installed: nothing (run `famous pull {m.name}`)")
        _print_installed(installed)

    emit(data, fmt, table)


def _parameters(shape: ModelShape) -> str:
    """Total parameters, and for a mixture-of-experts model the ones a token reads."""
    text = f"{shape.parameters / 1e9:.2f} B"
    if shape.active_parameters is not None:
        text += f" ({shape.active_parameters / 1e9:.2f} B active per token)"
    return text


def _print_installed(installed: list[dict]) -> None:
    for artifact in installed:
        print(f"installed: {artifact['engine']} / {artifact['variant']} at {artifact['path']}")
        for f in artifact.get("files", []):
            digest = f"sha256:{f['sha256']}" if f.get("sha256") else f"etag:{f.get('etag')}"
            print(f"  {f['relpath']}  {format_size(f['size_bytes'])}  {digest}")


@handle_errors
def engines(
    model: str = typer.Argument(..., help="A built-in package name or a package directory."),
    root: str | None = RootOption,
    fmt: OutputFormat = FormatOption,
) -> None:
    """List a model's engines with their score and compatibility on this machine."""
    view.engines(model, root, fmt)


@handle_errors
def show_engine(
    model: str = typer.Argument(..., help="A built-in package name or a package directory."),
    engine: str | None = typer.Argument(None, help="Engine name; default: the selected one."),
    root: str | None = RootOption,
    fmt: OutputFormat = FormatOption,
) -> None:
    """Explain one engine: manifest, score, why each device does or does not match, memory."""
    view.show_engine(model, engine, root, fmt)


@handle_errors
def use_engine(
    model: str = typer.Argument(..., help="A built-in package name or a package directory."),
    engine: str | None = typer.Argument(None, help="Engine to pin."),
    auto: bool = typer.Option(False, "--auto", help="Unpin: let famous choose again."),
    force: bool = typer.Option(False, "--force", help="Pin even an incompatible engine."),
    root: str | None = RootOption,
) -> None:
    """Pin the engine famous uses for a model (or --auto to choose by score again)."""
    from famous.manifests.loader import find_package
    from famous.services.catalog import pin, unpin
    from famous.services.selection import machine_report

    if auto == (engine is not None):
        raise InvalidInput("give an ENGINE or --auto (not both)")
    package = find_package(model)
    if auto:
        note = "unpinned" if unpin(package.name) else "was not pinned"
        typer.echo(f"{package.name}: {note}; famous chooses the engine automatically")
        return
    assert engine is not None
    pinned = pin(package, engine, machine_report(root), force=force)
    verdict = " (forced: not compatible here)" if pinned["forced"] else ""
    typer.echo(f"{package.name}: engine {engine} pinned{verdict}")


def register(app: typer.Typer) -> None:
    app.command("models")(models)
    app.command("show-model")(show_model)
    app.command("engines")(engines)
    app.command("show-engine")(show_engine)
    app.command("use-engine")(use_engine)
