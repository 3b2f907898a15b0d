"""``famous bench MODEL``: measure each compatible engine × variant of a package here.

Each case is launched the way ``famous run``'s gateway launches an installed model (the
artifact in the catalog, its engine's effective configuration, the runtime adapter's own
server on a free 127.0.0.1 port), put under ``bench_workload``'s fixed workload, and always
stopped. A case that cannot run here is skipped with the reason; one that fails to start
or to answer is reported as failed, and the bench goes on. Measurements are stored under
this machine's fingerprint, where measured selection (``famous.matchmaker.measured``)
finds them; ``auto`` pins the winner with the same pin ``famous use-engine`` writes.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

from famous.errors import InvalidInput

if TYPE_CHECKING:
    from famous.hardware.report import HardwareReport
    from famous.manifests.schema import ModelPackage
    from famous.store.artifacts import InstalledArtifact
    from famous.store.measurements import Measurement

log = logging.getLogger("famous.services")

MAX_STREAMS = 64
MAX_TOKENS = 4096
Status = Literal["pending", "ok", "skipped", "failed"]


@dataclass(kw_only=True)
class BenchCase:
    """One engine × variant: what happened to it, and what it measured."""

    engine: str
    variant: str
    runtime: str
    status: Status = "skipped"
    reason: str = ""  # why it was skipped or failed
    server: str = ""  # the server program that ran (famous ps's name)
    measurement: Measurement | None = None


@dataclass(kw_only=True)
class BenchReport:
    model: str
    fingerprint: str
    machine: str
    objective: str
    streams: int
    max_tokens: int
    cases: list[BenchCase]
    score_choice: tuple[str, str] | None = None  # (engine, variant) by manifest score alone
    best: tuple[str, str] | None = None  # best measured on the objective
    regret: float | None = None  # of the score choice against the best
    measured_choice: tuple[str, str] | None = None  # what measured selection now picks
    measured_regret: float | None = None
    pinned: str | None = None  # --auto: the engine pinned
    notes: list[str] = field(default_factory=list)

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


def check_limits(streams: int, max_tokens: int) -> None:
    if not 1 <= streams <= MAX_STREAMS:
        raise InvalidInput(f"--streams must be between 1 and {MAX_STREAMS}, got {streams}")
    if not 2 <= max_tokens <= MAX_TOKENS:
        raise InvalidInput(f"--max-tokens must be between 2 and {MAX_TOKENS}, got {max_tokens}")


def _check_names(package: ModelPackage, engines: list[str] | None, variants: list[str] | None):
    from famous.matchmaker.select import UnknownEngine

    for name in engines or []:
        if name not in package.engines:
            raise UnknownEngine(package.name, name, sorted(package.engines))
    known = {o for e in package.engines.values() for o in e.model_options}
    for name in variants or []:
        if name not in known:
            raise InvalidInput(
                f"{package.name!r} has no variant {name!r}; its variants are: "
                f"{', '.join(sorted(known))}"
            )


def plan_cases(
    package: ModelPackage,
    report: HardwareReport,
    engines: list[str] | None = None,
    variants: list[str] | None = None,
) -> list[BenchCase]:
    """Every engine × variant asked for (default: all, experimental engines only by name),
    each marked skipped with a reason when it cannot run here, else pending."""
    from famous.matchmaker.select import evaluate
    from famous.services.selection import missing_install

    _check_names(package, engines, variants)
    cases = []
    for name in engines or sorted(package.engines):
        manifest = package.engines[name]
        if manifest.experimental and not engines:
            continue
        for variant in manifest.model_options:
            if variants and variant not in variants:
                continue
            case = BenchCase(engine=name, variant=variant, runtime=manifest.runtime)
            ev = evaluate(package, manifest, report, option=variant)
            install = None if not ev.compatible else missing_install(manifest.runtime)
            if not ev.compatible:
                case.reason = "not compatible here: " + "; ".join(ev.reasons)
            elif install is not None:
                case.reason = f"the {manifest.runtime} runtime is not installed: {install}"
            else:
                case.status = "pending"  # run_case decides
            cases.append(case)
    if not cases:
        raise InvalidInput(f"no engine × variant of {package.name!r} matches what was asked")
    return cases


def artifact_for(model: str, engine: str, variant: str) -> InstalledArtifact | None:
    """The installed files of ``variant``: the engine's own artifact, else the same variant
    fetched for another engine (a variant names the files, whoever fetched them)."""
    from famous.store.artifacts import list_artifacts

    found = [a for a in list_artifacts(model) if a.variant == variant and Path(a.path).exists()]
    found.sort(key=lambda a: (a.engine != engine, a.created_at))
    return found[0] if found else None


def run_case(
    case: BenchCase, package: ModelPackage, fingerprint: str, streams: int, max_tokens: int
) -> None:
    """Launch the case's engine as ``famous run`` would, run the workload, always stop it."""
    from famous.runtimes import EngineError, LaunchSpec, get_runtime
    from famous.services.bench_workload import PeakMemory, Workload, WorkloadError
    from famous.services.selection import artifact_configuration
    from famous.store.config import resolve
    from famous.store.measurements import Measurement

    artifact = artifact_for(package.name, case.engine, case.variant)
    if artifact is None:
        case.status = "skipped"
        case.reason = (
            f"not installed: famous pull {package.name} --engine {case.engine} "
            f"--variant {case.variant}"
        )
        return
    _runtime, configuration = artifact_configuration(package.name, case.engine, artifact.format)
    name = f"bench-{package.name}-{case.engine}-{case.variant}"
    timeout = float(resolve()["startup-timeout"].value or 300)
    process = memory = None
    try:
        adapter = get_runtime(case.runtime, configuration)
        process = adapter.launch(
            LaunchSpec(name=name, model_path=Path(artifact.path), configuration=configuration)
        )
        case.server = process.server
        memory = PeakMemory(process.pid)
        process.wait_healthy(timeout=timeout)
        workload = Workload(process.base_url, name, max_tokens, process.adapt_request)
        try:
            result = workload.run(streams)
        finally:
            workload.close()
    except (EngineError, WorkloadError, OSError, ValueError) as exc:
        case.status, case.reason = "failed", str(exc).strip().splitlines()[0][:300]
        log.warning("bench %s/%s failed: %s", case.engine, case.variant, exc)
        return
    except Exception as exc:  # an HTTP client error: a failed case, never a failed bench
        case.status, case.reason = "failed", f"{type(exc).__name__}: {exc}"[:300]
        return
    finally:
        if process is not None:
            process.stop()
        peak = memory.stop() if memory is not None else 0
    case.status = "ok"
    case.measurement = Measurement(
        model=package.name,
        engine=case.engine,
        variant=case.variant,
        fingerprint=fingerprint,
        pp_tps=round(result.pp_tps, 2),
        decode_tps=round(result.decode_tps, 2),
        streams=streams,
        throughput_tps=round(result.throughput_tps, 2),
        ttft_ms=round(result.ttft_ms, 1),
        peak_rss_mb=round(peak / 2**20, 1) if peak else None,
        prompt_tokens=result.prompt_tokens,
        max_tokens=max_tokens,
    )


def run_bench(
    model: str,
    *,
    engines: list[str] | None = None,
    variants: list[str] | None = None,
    streams: int = 4,
    max_tokens: int = 32,
    objective: str = "decode",
    auto: bool = False,
    report: HardwareReport | None = None,
    progress: Callable[[BenchCase], None] | None = None,
) -> BenchReport:
    """Measure every case, store what ran, and compare with the choice by manifest score."""
    from famous.hardware.fingerprint import machine_fingerprint, machine_summary
    from famous.manifests.loader import find_package
    from famous.matchmaker.measured import check_objective
    from famous.matchmaker.resolve import machine_report
    from famous.store.measurements import record_measurement

    check_limits(streams, max_tokens)
    try:
        check_objective(objective)
    except ValueError as exc:
        raise InvalidInput(f"--objective: {exc}") from None
    package = find_package(model)
    report = report or machine_report()
    cases = plan_cases(package, report, engines, variants)
    fingerprint = machine_fingerprint(report)
    for case in cases:
        if case.status == "pending":
            run_case(case, package, fingerprint, streams, max_tokens)
            if case.measurement is not None:
                record_measurement(case.measurement)
        if progress is not None:
            progress(case)
    result = BenchReport(
        model=package.name,
        fingerprint=fingerprint,
        machine=machine_summary(report),
        objective=objective,
        streams=streams,
        max_tokens=max_tokens,
        cases=cases,
    )
    _compare(result, package, report)
    if auto:
        _pin_winner(result, package)
    return result


def _compare(result: BenchReport, package: ModelPackage, report: HardwareReport) -> None:
    """The manifest-score choice, the best measured case, and the regret of each choice."""
    from famous.matchmaker.measured import figure, regret
    from famous.matchmaker.select import NoCompatibleEngine, select
    from famous.store.measurements import measurements_for

    measured = {(c.engine, c.variant): c.measurement for c in result.cases if c.measurement}
    stored = measurements_for(package.name, result.fingerprint)
    try:
        by_score = select(package, report)
        result.score_choice = (by_score.engine.name, by_score.option_name)
        now = select(package, report, measurements=stored, objective=result.objective)
        result.measured_choice = (now.engine.name, now.option_name)
    except NoCompatibleEngine as exc:
        result.notes.append(f"no engine is chosen here: {exc.message}")
    if not measured:
        return
    objective = result.objective
    best_key, best = max(
        measured.items(),
        key=lambda kv: figure(kv[1], objective) * (1 if objective != "ttft" else -1),
    )
    result.best = best_key
    top = figure(best, objective)
    for attr, choice in (
        ("regret", result.score_choice),
        ("measured_regret", result.measured_choice),
    ):
        if choice in measured:
            setattr(
                result, attr, round(regret(top, figure(measured[choice], objective), objective), 4)
            )
    if result.score_choice is not None and result.score_choice not in measured:
        result.notes.append(
            f"the manifest-score choice {'/'.join(result.score_choice)} was not measured "
            "(skipped or failed): its regret is unknown"
        )


def _pin_winner(result: BenchReport, package: ModelPackage) -> None:
    """``--auto``: pin the best measured engine, as ``famous use-engine`` would."""
    from famous.store.selections import pin_engine

    if result.best is None:
        result.notes.append("--auto: nothing was measured, so nothing was pinned")
        return
    pin_engine(package.name, result.best[0], forced=False)
    result.pinned = result.best[0]
