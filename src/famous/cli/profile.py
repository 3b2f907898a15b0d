"""``famous profile`` and ``famous show-graph``.

Only typer at module level: torch and the exporters load inside the commands.
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any

import typer

from famous.cli.options import FormatOption
from famous.cli.render import OutputFormat, emit


def _resolve(model: str) -> tuple[Path, list[Path]]:
    """``services.build.built_source``, its ``NotFound`` printed with its exit code."""
    from famous.errors import NotFound, exit_code
    from famous.services.build import built_source

    try:
        return built_source(model)
    except NotFound as e:
        sys.stderr.write(f"error: {e}\n")
        raise typer.Exit(exit_code(e)) from None


def profile(
    model: str = typer.Argument(..., help="Model folder, or the name of a package famous built."),
    prompt_tokens: int = typer.Option(64, "--prompt-tokens", help="Prompt length (prefill)."),
    new_tokens: int = typer.Option(32, "--new-tokens", help="Decode steps."),
    dtype: str = typer.Option("fp32", "--dtype", help="Eager model dtype: fp32, bf16, fp16."),
    threads: int = typer.Option(0, "--threads", help="torch threads (0: torch's default)."),
    artifact: list[Path] = typer.Option(
        [], "--artifact", help="A .pt2 / .pte / .tflite to profile too (repeatable)."
    ),
    eager: bool = typer.Option(True, "--eager/--no-eager", help="Profile the eager model."),
    ops: bool = typer.Option(True, "--ops/--no-ops", help="Per-op-kind times (torch.profiler)."),
    fmt: OutputFormat = FormatOption,
) -> None:
    """Prefill and decode tokens/s, time per layer and per op kind, and peak RSS for the
    eager model and for each artifact built from it."""
    import torch

    from famous.genai.errors import GenAIError
    from famous.genai.export.profiling import format_profile, profile_artifact, profile_model

    if threads:
        torch.set_num_threads(threads)
    source, built = _resolve(model)
    results = []
    try:
        if eager:
            from famous.genai.loader import load_model

            m = load_model(source, dtype, max_seq_len=max(256, prompt_tokens + new_tokens + 1))
            results.append(
                profile_model(m, prompt_tokens=prompt_tokens, new_tokens=new_tokens, op_profile=ops)
            )
            results[-1].artifact = str(source)
            del m
        for path in [*built, *artifact]:
            try:
                results.append(
                    profile_artifact(path, prompt_tokens=prompt_tokens, new_tokens=new_tokens)
                )
            except ImportError as e:  # an optional runtime that is not installed
                sys.stderr.write(f"skipped {path}: {e}\n")
    except (GenAIError, ValueError, FileNotFoundError) as e:
        sys.stderr.write(f"error: {e}\n")
        raise typer.Exit(1) from None
    emit(
        [r.as_dict() for r in results],
        fmt,
        lambda: typer.echo("\n\n".join(format_profile(r) for r in results)),
    )


def _module_tree_and_graph(
    source: Path, quant: str | None, max_seq_len: int, signature: str | None, composite: bool
) -> tuple[list[Any], Any]:
    """The fp32 model's module tree (``quant`` applied) and, with ``signature``, its exported
    graph; a model that cannot be loaded or exported exits 1 with its error."""
    from famous.genai.errors import GenAIError
    from famous.genai.export.graph_view import export_graph, module_tree
    from famous.genai.loader import load_model

    try:
        m = load_model(source, "fp32", max_seq_len=max_seq_len)
        if quant:
            from famous.genai.quantize.modules import apply_recipe
            from famous.genai.quantize.recipe import get_recipe

            apply_recipe(m, get_recipe(quant))
        rows = module_tree(m)
        ep = None if signature is None else export_graph(m, signature, composite=composite)
    except (GenAIError, ValueError) as e:
        sys.stderr.write(f"error: {e}\n")
        raise typer.Exit(1) from None
    return rows, ep


def show_graph(
    model: str = typer.Argument(..., help="Model folder, or the name of a package famous built."),
    depth: int = typer.Option(3, "--depth", help="Module tree depth to print (-1: all)."),
    quant: str | None = typer.Option(
        None, "--quant", "-q", help="Apply a quantization recipe first (preset or YAML)."
    ),
    signature: str = typer.Option(
        "decode", "--signature", help="Which signature to export: decode or prefill_N."
    ),
    composite: bool = typer.Option(
        True, "--composite/--no-composite", help="Keep SDPA / RMSNorm / KV update as single ops."
    ),
    pt2: Path | None = typer.Option(
        None, "--pt2", help="Write the ExportedProgram here (Model Explorer opens it)."
    ),
    html_out: Path | None = typer.Option(None, "--html", help="Write a self-contained HTML view."),
    max_seq_len: int = typer.Option(128, "--max-seq-len", help="KV-cache slots of the export."),
    force: bool = typer.Option(False, "--force", help="Overwrite existing output files."),
    fmt: OutputFormat = FormatOption,
) -> None:
    """The module tree (parameters, dtypes, quantization per layer); optionally an exported
    graph as .pt2 and a self-contained HTML view."""
    from famous.genai.export.graph_view import (
        format_tree,
        op_histogram,
        render_html,
        save_pt2,
        tree_as_dicts,
    )

    for out in (pt2, html_out):
        if out is not None and out.exists() and not force:
            sys.stderr.write(f"error: {out} exists; pass --force to overwrite it\n")
            raise typer.Exit(1)
    source, _ = _resolve(model)
    exported = signature if pt2 is not None or html_out is not None else None
    rows, ep = _module_tree_and_graph(source, quant, max_seq_len, exported, composite)
    shown = [r for r in rows if depth < 0 or r.depth <= depth]
    written = {}
    if ep is not None and pt2 is not None:
        written["pt2"] = str(save_pt2(ep, pt2))
    if html_out is not None:
        html_out.parent.mkdir(parents=True, exist_ok=True)
        html_out.write_text(render_html(source.name, rows, ep, signature), encoding="utf-8")
        written["html"] = str(html_out)
    data = {
        "model": str(source),
        "modules": tree_as_dicts(shown),
        "ops": dict(op_histogram(ep)) if ep is not None else {},
        "written": written,
    }

    def table() -> None:
        typer.echo(format_tree(shown))
        if ep is not None:
            typer.echo(f"\nexported {signature}: {len(list(ep.graph.nodes))} nodes")
            ranked = op_histogram(ep).most_common()
            for i, (op, c) in enumerate(ranked):
                if i < 12 or op.startswith("famous."):  # the composite ops always show
                    typer.echo(f"  {c:>4} × {op}")
        for kind, path in written.items():
            typer.echo(f"wrote {kind}: {path}")

    emit(data, fmt, table)


def register(app: typer.Typer) -> None:
    app.command("profile")(profile)
    app.command("show-graph")(show_graph)
