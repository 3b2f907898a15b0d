"""The model lifecycle: search, pull, list, rm, import, prune, du.

Listing commands (list, du) only read the catalog: no torch, no network, and no catalog
file is created when there is none.
"""

from __future__ import annotations

import functools
import sys
from collections.abc import Callable
from typing import Any, ParamSpec, TypeVar

import typer

from famous.cli.errors import handle_errors
from famous.cli.render import FormatOption, OutputFormat, emit, print_fields, print_table

P = ParamSpec("P")
R = TypeVar("R")


def _size(n: int | None) -> str:
    from famous.units import format_size

    return format_size(n)


def lifecycle_errors(func: Callable[P, R]) -> Callable[P, R]:
    """HubError / ArtifactInUse → ``error: …`` + the hint on stderr, and their exit code."""

    @functools.wraps(func)
    def wrapper(*args: P.args, **kwargs: P.kwargs) -> R:
        from famous.hub.errors import HubError
        from famous.store.artifacts import ArtifactInUse

        try:
            return func(*args, **kwargs)
        except HubError as exc:
            sys.stderr.write(f"error: {exc.message}\n")
            if exc.hint:
                sys.stderr.write(f"  {exc.hint}\n")
            raise typer.Exit(exc.exit_code) from None
        except ArtifactInUse as exc:
            sys.stderr.write(f"error: {exc}\n")
            raise typer.Exit(1) from None

    return handle_errors(wrapper)


@lifecycle_errors
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
                _size(h.size_bytes) if h.size_bytes else "-",
                "gated" if h.gated else "",
            )
            for h in hits
        ]
        print_table(["model", "downloads", "likes", "formats", "size", ""], rows)

    emit(hits, fmt, table)


@lifecycle_errors
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
                ("size", _size(a.size_bytes)),
                ("path", a.path),
                ("status", state),
            ]
        )

    emit(result, fmt, table)


@lifecycle_errors
def list_(
    model: str | None = typer.Argument(None, help="Only this model."),
    fmt: OutputFormat = FormatOption,
) -> None:
    """List installed models (name, engine, variant, size, path, pulled at)."""
    from famous.store.artifacts import list_artifacts

    items = list_artifacts(model)

    def table() -> None:
        rows = [
            (
                a.model,
                a.engine,
                a.variant,
                _size(a.size_bytes),
                a.path,
                a.created_at.replace("+00:00", "Z"),
            )
            for a in items
        ]
        print_table(["model", "engine", "variant", "size", "path", "pulled"], rows)

    emit(items, fmt, table)


@lifecycle_errors
def rm(
    model: str = typer.Argument(..., help="Model name or repo id, as `famous list` shows it."),
    engine: str | None = typer.Option(None, "--engine", "-e"),
    variant: str | None = typer.Option(None, "--variant"),
    force: bool = typer.Option(False, "--force", help="Remove even if a deployment uses it."),
    fmt: OutputFormat = FormatOption,
) -> None:
    """Remove installed artifacts of a model and free their files."""
    from famous.cli import exits
    from famous.store.artifacts import remove_artifacts

    removed = remove_artifacts(model, engine, variant, force=force)
    if not removed:
        sys.stderr.write(f"error: {model} is not installed (see `famous list`)\n")
        raise typer.Exit(exits.NOT_FOUND)

    def table() -> None:
        for a in removed:
            freed = _size(a.size_bytes) if a.owned else "files kept (imported)"
            sys.stdout.write(f"removed {a.model} ({a.engine}/{a.variant}): {freed}\n")

    emit(removed, fmt, table)


@lifecycle_errors
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
                ("size", _size(a.size_bytes)),
                ("path", a.path),
                ("copied", "yes" if a.owned else "no"),
            ]
        )

    emit(result, fmt, table)


def needed_artifact_ids() -> set[int]:
    """Artifacts some engine choice needs: the pinned or best engine of each installed model."""
    from famous.store.artifacts import list_artifacts

    keep: set[int] = set()
    report: Any = None
    by_model: dict[str, list[Any]] = {}
    for a in list_artifacts():
        by_model.setdefault(a.model, []).append(a)
    for model, items in by_model.items():
        if len(items) == 1:
            keep.add(items[0].id)
            continue
        choice: tuple[str, str] | None = None
        try:
            from famous.services.selection import machine_report, resolve_selection

            report = report or machine_report()
            package_name = str(items[0].metadata.get("package") or model)
            sel = resolve_selection(package_name, report=report).selection
            choice = (sel.engine.name, sel.option_name)
        except Exception:  # no package to ask (an import, a Hub repo): decided below
            choice = None
        matched = [a for a in items if choice and (a.engine, a.variant) == choice]
        if matched:
            keep.update(a.id for a in matched)
        else:  # keep the matchmaker's latest pick, else the newest artifact
            picked = [a for a in items if a.metadata.get("selected_by") == "matchmaker"]
            keep.add(max(picked or items, key=lambda a: (a.created_at, a.id)).id)
    return keep


@lifecycle_errors
def prune(
    dry_run: bool = typer.Option(False, "--dry-run", help="Say what would go; delete nothing."),
    fmt: OutputFormat = FormatOption,
) -> None:
    """Remove artifacts no engine choice needs, and unfinished downloads."""
    from famous.store.artifacts import prune as run_prune

    report = run_prune(needed_artifact_ids(), dry_run=dry_run)

    def table() -> None:
        verb = "would remove" if dry_run else "removed"
        for a in report.removed:
            sys.stdout.write(f"{verb} {a.model} ({a.engine}/{a.variant}) {_size(a.size_bytes)}\n")
        for p in report.removed_paths:
            sys.stdout.write(f"{verb} unfinished download {p}\n")
        sys.stdout.write(f"{'would free' if dry_run else 'freed'} {_size(report.freed_bytes)}\n")

    emit(report, fmt, table)


@lifecycle_errors
def du(fmt: OutputFormat = FormatOption) -> None:
    """Disk used by installed models, unfinished downloads, and what is free."""
    from famous.store.artifacts import disk_usage

    usage = disk_usage()

    def table() -> None:
        rows = [
            (
                a.model,
                a.engine,
                a.variant,
                _size(a.size_bytes),
                "yes" if a.owned else "no (imported)",
            )
            for a in usage.artifacts
        ]
        print_table(["model", "engine", "variant", "size", "owned"], rows)
        sys.stdout.write("\n")
        unfinished = _size(usage.partial_bytes)
        if usage.orphan_paths:
            unfinished += f" in {len(usage.orphan_paths)} folder(s); `famous prune` removes them"
        print_fields(
            [
                ("total", _size(usage.total_bytes)),
                ("unfinished", unfinished),
                ("free", _size(usage.free_bytes)),
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
