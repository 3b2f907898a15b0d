"""Model packages and engine selection: models, show-model, engines, show-engine, use-engine."""

from __future__ import annotations

import typer

from famous.cli import exits
from famous.cli.errors import handle_errors
from famous.cli.render import (
    FormatOption,
    OutputFormat,
    emit,
    print_fields,
    print_table,
)
from famous.errors import InvalidInput
from famous.units import format_size

RootOption = typer.Option(
    None,
    "--root",
    help="Read the machine from a captured root instead of / (also FAMOUS_HARDWARE_ROOT).",
)


@handle_errors
def models(fmt: OutputFormat = FormatOption) -> None:
    """List the model packages: built-in ones, then those built or added under FAMOUS_HOME."""
    from famous.services.catalog import package_rows

    data = package_rows()

    def table() -> None:
        rows = [
            (
                d["name"],
                ",".join(d["capabilities"]),
                d["license"],
                len(d["engines"]),
                _clip(d["description"], 60),
            )
            for d in data
        ]
        print_table(["model", "capabilities", "license", "engines", "description"], rows)

    emit(data, fmt, table)


def _clip(text: str, width: int) -> str:
    return text if len(text) <= width else text[: width - 1] + "…"


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
                ("parameters", f"{m.shape.parameters / 1e9:.2f} B"),
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
    from famous.manifests.loader import find_package
    from famous.services.catalog import engine_choice
    from famous.services.selection import machine_report

    choice = engine_choice(model, find_package(model), machine_report(root))
    evaluations, selected = choice.evaluations, choice.selected
    data = choice.rows()

    def table() -> None:
        rows = [
            (
                ("* " if ev.engine == selected else "  ") + ev.engine,
                ev.vendor,
                ev.summary,
                ev.verdict,
                ev.score,
                ev.option or "-",
            )
            for ev in evaluations
        ]
        print_table(["engine", "vendor", "summary", "compatible", "score", "option"], rows)
        if selected is None:
            print("\nno engine can run here; see `famous show-engine MODEL ENGINE` for reasons")

    emit(data, fmt, table)
    if selected is None:
        raise typer.Exit(exits.INCOMPATIBLE)


@handle_errors
def show_engine(
    model: str = typer.Argument(..., help="A built-in package name or a package directory."),
    engine: str | None = typer.Argument(None, help="Engine name; default: the selected one."),
    root: str | None = RootOption,
    fmt: OutputFormat = FormatOption,
) -> None:
    """Explain one engine: manifest, score, why each device does or does not match, memory."""
    from famous.manifests.loader import find_package
    from famous.services.catalog import engine_detail
    from famous.services.selection import machine_report

    detail = engine_detail(model, find_package(model), engine, machine_report(root))
    manifest, ev, settings, keys = detail.manifest, detail.evaluation, detail.settings, detail.keys
    data = detail.data()

    def table() -> None:
        print_fields(
            [
                ("engine", manifest.name),
                ("summary", manifest.summary),
                ("description", manifest.description),
                ("vendor", manifest.vendor),
                ("runtime", manifest.runtime),
                ("experimental", "yes" if manifest.experimental else "no"),
                ("compatible", ev.verdict),
                ("score", ev.score),
                ("model option", ev.option or "-"),
                ("model options", ", ".join(manifest.model_options)),
            ]
        )
        print("\ndevices:")
        for check in ev.devices:
            mark = "ok " if check.matched else "no "
            where = f" -> {check.device} (+{check.score})" if check.matched else ""
            print(f"  [{check.group}] {mark}{check.requirement}{where}")
            for reason in check.reasons:
                print(f"      {reason}")
        print("\nmemory:")
        for m in ev.memory:
            print(f"  {m.explain()}")
        if ev.reasons:
            print("\nnot compatible:")
            for reason in ev.reasons:
                print(f"  - {reason}")
        print("\nconfiguration (famous set KEY=VALUE --model MODEL changes it):")
        for key, s in sorted(settings.items()):
            value = "(runtime default)" if s.value is None else s.value
            doc = f"  - {keys[key]}" if key in keys else ""
            print(f"  {key} = {value}  ({s.layer}){doc}")

    emit(data, fmt, table)


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
