"""``famous bench MODEL``: measure the engines of a model on this machine, compare with the
manifest-score choice, and (``--auto``) pin the fastest."""

from __future__ import annotations

import sys
from typing import TYPE_CHECKING

import typer

from famous.cli import exits
from famous.cli.errors import handle_errors
from famous.cli.options import FormatOption
from famous.cli.render import OutputFormat, emit, print_table

if TYPE_CHECKING:
    from famous.services.bench import BenchCase, BenchReport


def _names(values: list[str] | None) -> list[str] | None:
    """``--engines a,b --engines c`` -> [a, b, c]; None when none was given."""
    names = [n.strip() for v in values or [] for n in v.split(",") if n.strip()]
    return names or None


@handle_errors
def bench(
    model: str = typer.Argument(..., help="A built-in package name or a package directory."),
    engines: list[str] | None = typer.Option(
        None, "--engines", "-e", help="Engines to measure (comma-separated or repeated)."
    ),
    variants: list[str] | None = typer.Option(
        None, "--variants", "-v", help="Variants (model options) to measure."
    ),
    streams: int = typer.Option(4, "--streams", help="Concurrent streams of the throughput run."),
    max_tokens: int = typer.Option(32, "--max-tokens", help="Tokens each timed request makes."),
    objective: str = typer.Option(
        "decode", "--objective", help="What ranks the results: decode, throughput or ttft."
    ),
    auto: bool = typer.Option(False, "--auto", help="Pin the best measured engine."),
    fmt: OutputFormat = FormatOption,
) -> None:
    """Run each compatible engine × variant with a short fixed workload and store the figures
    under this machine's fingerprint; measured selection then ranks engines by them."""
    from famous.services.bench import run_bench

    def progress(case: BenchCase) -> None:
        sys.stderr.write(f"{case.engine}/{case.variant}: {case.status}")
        sys.stderr.write(f" ({case.reason})\n" if case.reason else "\n")

    result = run_bench(
        model,
        engines=_names(engines),
        variants=_names(variants),
        streams=streams,
        max_tokens=max_tokens,
        objective=objective,
        auto=auto,
        progress=progress,
    )
    emit(result.as_dict(), fmt, lambda: print_report(result))
    if not any(case.status == "ok" for case in result.cases):
        # nothing measured (all skipped or failed): a script must not read it as a result
        raise SystemExit(exits.ERROR)


def _cells(case: BenchCase, result: BenchReport) -> list[object]:
    mark = "* " if result.score_choice == (case.engine, case.variant) else "  "
    m = case.measurement
    figures: list[object] = (
        [m.pp_tps, m.decode_tps, m.throughput_tps, m.ttft_ms, m.peak_rss_mb]
        if m is not None
        else ["-"] * 5
    )
    return [mark + case.engine, case.variant, case.server or "-", case.status, *figures]


def print_report(result: BenchReport) -> None:
    """The table, the choices and their regret; then why each case was skipped or failed."""
    print(f"machine: {result.machine} (fingerprint {result.fingerprint})")
    print(
        f"workload: {result.max_tokens} tokens per request, {result.streams} streams; "
        f"objective: {result.objective}\n"
    )
    headers = ["engine", "variant", "server", "status", "pp tok/s", "decode tok/s"]
    headers += [f"{result.streams}-stream tok/s", "ttft ms", "peak MB"]
    print_table(headers, [_cells(c, result) for c in result.cases])
    print("\n* the choice by manifest score alone")
    if result.best is not None:
        print(f"best measured: {'/'.join(result.best)}")
    for label, choice, regret in (
        ("manifest-score choice", result.score_choice, result.regret),
        ("measured selection", result.measured_choice, result.measured_regret),
    ):
        if choice is not None:
            share = "unknown" if regret is None else f"{regret * 100:.1f} %"
            print(f"{label}: {'/'.join(choice)} (regret {share})")
    if result.pinned:
        print(f"pinned: {result.pinned} (famous use-engine {result.model} --auto unpins)")
    for case in result.cases:
        if case.status in ("skipped", "failed"):
            print(f"{case.status}: {case.engine}/{case.variant}: {case.reason}")
    for note in result.notes:
        print(f"note: {note}")


def register(app: typer.Typer) -> None:
    app.command("bench")(bench)
