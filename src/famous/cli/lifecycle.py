"""The model lifecycle: search, pull, list, rm, import, prune, du.

Listing commands (list, du) only read the catalog: no torch, no network, and no catalog
file is created when there is none.
"""

from __future__ import annotations

import sys

import typer

from famous.cli.errors import handle_errors
from famous.cli.options import FormatOption
from famous.cli.render import OutputFormat, emit, print_fields, print_table
from famous.cli.views import artifacts as view
from famous.units import format_size


@handle_errors
def search(
    query: str = typer.Argument(..., help="Words to look for in model names."),
    format_filter: str | None = typer.Option(
        None, "--model-format", "--type", help="Only repos holding this format (gguf, mlx, …)."
    ),
    limit: int = typer.Option(20, "--limit", "-n", min=1, max=200),
    fmt_or_model: str = typer.Option(
        "table",
        "--format",
        "-f",
        help="table, json or yaml; or a model format (gguf, safetensors, mlx, …) to filter by.",
    ),
) -> None:
    """Search the Hugging Face Hub for models."""
    from famous.hub.search import search as run_search

    if fmt_or_model in OutputFormat.__members__:
        fmt = OutputFormat(fmt_or_model)
    else:
        fmt, format_filter = OutputFormat.table, format_filter or fmt_or_model
    hits = run_search(query, format=format_filter, limit=limit)

    def table() -> None:
        rows = [
            (
                h.repo_id,
                f"{h.downloads:,}",
                h.likes,
                ",".join(h.formats) or "-",
                format_size(h.size_bytes) if h.size_bytes else "-",
                "gated" if h.gated else "",
            )
            for h in hits
        ]
        print_table(["model", "downloads", "likes", "formats", "size", ""], rows)

    emit(hits, fmt, table)


@handle_errors
def pull(
    model: str = typer.Argument(
        ..., help="Package name, ORG/NAME[:QUANT], hf.co/ORG/NAME, or a package dir."
    ),
    engine: str | None = typer.Option(
        None, "--engine", "-e", help="Use this engine, not the best."
    ),
    variant: str | None = typer.Option(
        None, "--variant", help="Model option / quantization (Q4_K_M, bf16…)."
    ),
    offline: bool = typer.Option(
        False, "--offline", help="Use only what is installed (HF_HUB_OFFLINE=1)."
    ),
    allow_pickle: bool = typer.Option(
        False, "--allow-pickle", help="Accept pickle checkpoints (.bin/.pt)."
    ),
    quiet: bool = typer.Option(False, "--quiet", "-q", help="No progress bars."),
    fmt: OutputFormat = FormatOption,
) -> None:
    """Download the files of the engine chosen for this machine (verified, resumable)."""
    from famous.hub.progress import default_progress
    from famous.hub.pull import pull as run_pull

    progress = default_progress(quiet or fmt is not OutputFormat.table)
    result = run_pull(
        model,
        engine=engine,
        variant=variant,
        offline=offline or None,
        allow_pickle=allow_pickle,
        progress=progress,
        on_wait=lambda: sys.stderr.write(f"waiting for another famous pulling {model}…\n"),
    )
    for warning in result.warnings:
        sys.stderr.write(f"warning: {warning}\n")

    def table() -> None:
        a = result.artifact
        state = "already installed" if result.reused else f"pulled in {result.seconds:.1f}s"
        print_fields(
            [
                ("model", result.model),
                ("engine", result.engine),
                ("variant", result.variant),
                ("format", a.format),
                ("size", format_size(a.size_bytes)),
                ("path", a.path),
                ("status", state),
            ]
        )

    emit(result, fmt, table)
    from famous.cli.deployments import obtain_llama_server

    obtain_llama_server(result.model)


@handle_errors
def list_(
    model: str | None = typer.Argument(None, help="Only this model."),
    fmt: OutputFormat = FormatOption,
) -> None:
    """List installed models (name, engine, variant, size, path, pulled at)."""
    view.list_installed(model, fmt)


@handle_errors
def rm(
    model: str = typer.Argument(..., help="Model name or repo id, as `famous list` shows it."),
    engine: str | None = typer.Option(None, "--engine", "-e"),
    variant: str | None = typer.Option(None, "--variant"),
    force: bool = typer.Option(False, "--force", help="Remove even if a deployment uses it."),
    fmt: OutputFormat = FormatOption,
) -> None:
    """Remove installed artifacts of a model and free their files."""
    from famous.services.lifecycle import remove_installed

    removed = remove_installed(model, engine, variant, force=force)

    def table() -> None:
        for a in removed:
            freed = format_size(a.size_bytes) if a.owned else "files kept (imported)"
            sys.stdout.write(f"removed {a.model} ({a.engine}/{a.variant}): {freed}\n")

    emit(removed, fmt, table)


@handle_errors
def import_(
    path: str = typer.Argument(..., help="A .gguf file or a model folder."),
    name: str | None = typer.Option(
        None, "--name", help="Catalog name (default: file/folder name)."
    ),
    copy: bool = typer.Option(
        False, "--copy", help="Copy under FAMOUS_HOME instead of referencing."
    ),
    engine: str | None = typer.Option(None, "--engine", "-e"),
    fmt: OutputFormat = FormatOption,
) -> None:
    """Register a local GGUF file or model folder (no copy unless --copy)."""
    from famous.hub.pull import import_local

    result = import_local(path, name=name, copy=copy, engine=engine)

    def table() -> None:
        a = result.artifact
        print_fields(
            [
                ("model", a.model),
                ("engine", a.engine),
                ("variant", a.variant),
                ("format", a.format),
                ("size", format_size(a.size_bytes)),
                ("path", a.path),
                ("copied", "yes" if a.owned else "no"),
            ]
        )

    emit(result, fmt, table)


@handle_errors
def prune(
    dry_run: bool = typer.Option(False, "--dry-run", help="Say what would go; delete nothing."),
    fmt: OutputFormat = FormatOption,
) -> None:
    """Remove artifacts no engine choice needs, and unfinished downloads."""
    from famous.services.lifecycle import prune as run_prune

    report = run_prune(dry_run=dry_run)

    def table() -> None:
        verb = "would remove" if dry_run else "removed"
        for a in report.removed:
            sys.stdout.write(
                f"{verb} {a.model} ({a.engine}/{a.variant}) {format_size(a.size_bytes)}\n"
            )
        for p in report.removed_paths:
            sys.stdout.write(f"{verb} unfinished download {p}\n")
        sys.stdout.write(
            f"{'would free' if dry_run else 'freed'} {format_size(report.freed_bytes)}\n"
        )

    emit(report, fmt, table)


@handle_errors
def du(fmt: OutputFormat = FormatOption) -> None:
    """Disk used by installed models, unfinished downloads, and what is free."""
    from famous.store.artifacts import disk_usage

    usage = disk_usage()

    def table() -> None:
        rows = [
            (*view.artifact_cells(a), "yes" if a.owned else "no (imported)")
            for a in usage.artifacts
        ]
        print_table(["model", "engine", "variant", "size", "owned"], rows)
        sys.stdout.write("\n")
        unfinished = format_size(usage.partial_bytes)
        if usage.orphan_paths:
            unfinished += f" in {len(usage.orphan_paths)} folder(s); `famous prune` removes them"
        print_fields(
            [
                ("total", format_size(usage.total_bytes)),
                ("unfinished", unfinished),
                ("free", format_size(usage.free_bytes)),
            ]
        )
        for path in usage.orphan_paths:
            sys.stdout.write(f"unfinished: {path}\n")

    emit(usage, fmt, table)


def register(app: typer.Typer) -> None:
    app.command("search")(search)
    app.command("pull")(pull)
    app.command("list")(list_)
    app.command("rm")(rm)
    app.command("import")(import_)
    app.command("prune")(prune)
    app.command("du")(du)
