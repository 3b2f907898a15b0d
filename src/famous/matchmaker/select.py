"""Score every engine of a package against a machine and pick one, explaining each verdict.

Rules, in order:
1. An engine is compatible when every ``allof`` device matches and, if it lists ``anyof``
   devices, at least one of them does; and when one of its model options fits in memory.
2. An engine's score is the sum of its matched ``allof`` scores plus its best ``anyof``
   score (weights in ``devices.py``).
3. The model option is the engine's default when it fits, else the largest that does.
4. Experimental engines are never picked automatically (only by name).
5. The highest score wins; ties go to the engine whose chosen option is the engine's
   default, then to the smaller memory need, then to the engine name (alphabetical), so the
   same machine always gets the same answer.
6. Measured selection (``famous.matchmaker.measured``): given ``famous bench``'s
   measurements for this machine, the compatible engine × variant that measured best on
   the objective wins over rule 5, and a pinned engine runs its best-measured variant.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Literal

from famous.errors import Incompatible, NotFound
from famous.matchmaker.devices import DeviceMatch, match_device
from famous.matchmaker.environment import engine_environment
from famous.matchmaker.measured import MeasuredRanking, rank
from famous.matchmaker.memory import MemoryEstimate, estimate, memory_budget

if TYPE_CHECKING:  # the matchmaker reads manifests by attribute: validated models or records
    from famous.hardware.report import HardwareReport
    from famous.manifests.schema import EngineManifest, ModelOption, ModelPackage

Verdict = Literal["yes", "exptl", "no"]


@dataclass(kw_only=True)
class DeviceCheck(DeviceMatch):
    group: Literal["allof", "anyof"]


@dataclass(kw_only=True)
class EngineEvaluation:
    """Everything the matchmaker concluded about one engine on this machine."""

    engine: str
    vendor: str
    summary: str
    runtime: str
    experimental: bool
    compatible: bool
    score: int
    devices: list[DeviceCheck]
    memory: list[MemoryEstimate]
    option: str | None  # the model option it would run
    reasons: list[str]  # why it is incompatible (empty when compatible)

    @property
    def verdict(self) -> Verdict:
        if not self.compatible:
            return "no"
        return "exptl" if self.experimental else "yes"


@dataclass(kw_only=True)
class Selection:
    """The engine and model option chosen for a package on a machine, with all evaluations."""

    package: str
    engine: EngineManifest
    option_name: str
    option: ModelOption
    evaluation: EngineEvaluation
    evaluations: list[EngineEvaluation]
    pinned: bool = False  # chosen by the user (`--engine`, `use-engine`), not by score
    # what `famous bench` measured here, when it decided (or, for a pin, informed) the choice
    measured: MeasuredRanking | None = None
    # what the engine's process needs on the matched device
    environment: dict[str, str] = field(default_factory=dict)

    @property
    def memory(self) -> MemoryEstimate:
        return next(m for m in self.evaluation.memory if m.option == self.option_name)


def opt_in_hint(package: str, evaluations: Sequence[EngineEvaluation]) -> str | None:
    """How to use a compatible experimental engine when no other one runs, else None."""
    if any(ev.compatible and not ev.experimental for ev in evaluations):
        return None
    names = [ev.engine for ev in evaluations if ev.compatible and ev.experimental]
    if not names:
        return None
    which = ", ".join(names)
    return (
        f"experimental engine {which} can run here with an explicit opt-in: "
        f"`famous pull {package} --engine {names[0]}` "
        f"(or `famous use-engine {package} {names[0]}` to keep it)"
    )


class NoCompatibleEngine(Incompatible, RuntimeError):
    """No engine of the package can run here; the message carries every engine's reasons."""

    def __init__(self, package: str, evaluations: list[EngineEvaluation], detail: str = ""):
        self.package = package
        self.evaluations = evaluations
        lines = [detail or f"no engine of {package!r} can run on this machine:"]
        for ev in evaluations:
            why = "; ".join(ev.reasons) or (
                "experimental: pick it by name" if ev.compatible else ""
            )
            lines.append(f"  {ev.engine}: {why}")
        super().__init__("\n".join(lines), opt_in_hint(package, evaluations))


class UnknownEngine(NotFound, LookupError):
    def __init__(self, package: str, engine: str, known: list[str]):
        super().__init__(
            f"{package!r} has no engine {engine!r}; its engines are: {', '.join(known)}"
        )


def _matched(evaluation: EngineEvaluation) -> set[str]:
    return {c.device for c in evaluation.devices if c.matched and c.device}


def _context(engine: EngineManifest, override: int | None) -> int | None:
    if override:
        return override
    value = engine.configuration.get("context-size")
    return value if isinstance(value, int) and value > 0 else None


def evaluate(
    package: ModelPackage,
    engine: EngineManifest,
    report: HardwareReport,
    context: int | None = None,
    option: str | None = None,
) -> EngineEvaluation:
    """Match devices, then find the option to run: ``option`` if given, else by memory fit."""
    checks = [
        DeviceCheck(group="allof", **dataclasses.asdict(match_device(d, report)))
        for d in engine.devices.allof
    ] + [
        DeviceCheck(group="anyof", **dataclasses.asdict(match_device(d, report)))
        for d in engine.devices.anyof
    ]
    reasons = [r for c in checks if c.group == "allof" and not c.matched for r in c.reasons]
    anyof = [c for c in checks if c.group == "anyof"]
    if anyof and not any(c.matched for c in anyof):
        reasons.append("none of: " + " | ".join("; ".join(c.reasons) for c in anyof))
    score = sum(c.score for c in checks if c.group == "allof") + max(
        (c.score for c in anyof), default=0
    )
    requirements = [*engine.devices.allof, *engine.devices.anyof]
    gpu_slot = next(
        (
            c.device
            for c, req in zip(checks, requirements, strict=True)
            if c.matched and req.type in ("gpu", "npu")
        ),
        None,
    )
    budget = memory_budget(engine, report, gpu_slot)
    ctx = _context(engine, context)
    memory = [
        estimate(name, package.option(name), package.shape_of(name), engine, budget, ctx)
        for name in engine.model_options
    ]
    chosen: str | None = None
    if option is not None:
        if option not in engine.model_options:
            reasons.append(
                f"has no model option {option!r} (options: {', '.join(engine.model_options)})"
            )
        else:
            chosen = option
            fit = next(m for m in memory if m.option == option)
            if not fit.fits:
                reasons.append(fit.explain())
    elif not reasons:  # memory only matters once the devices match
        by_name = {m.option: m for m in memory}
        if by_name[engine.default_model_option].fits:
            chosen = engine.default_model_option
        else:
            fitting = [m for m in memory if m.fits]
            if fitting:
                chosen = max(fitting, key=lambda m: (m.weights_bytes, m.option)).option
            else:
                smallest = min(memory, key=lambda m: m.total_bytes)
                reasons.append(f"no model option fits: the smallest, {smallest.explain()}")
    compatible = not reasons
    return EngineEvaluation(
        engine=engine.name,
        vendor=engine.vendor,
        summary=engine.summary,
        runtime=engine.runtime,
        experimental=engine.experimental,
        compatible=compatible,
        score=score if compatible else 0,
        devices=checks,
        memory=memory,
        option=chosen if compatible else None,
        reasons=reasons,
    )


def evaluate_all(
    package: ModelPackage, report: HardwareReport, context: int | None = None
) -> list[EngineEvaluation]:
    """Every engine, best first (the order `famous engines` prints)."""
    evaluations = [evaluate(package, e, report, context) for e in package.engines.values()]
    return sorted(evaluations, key=lambda ev: _rank(ev, package))


def _rank(ev: EngineEvaluation, package: ModelPackage) -> tuple:
    engine = package.engines[ev.engine]
    need = next((m.total_bytes for m in ev.memory if m.option == ev.option), 0)
    return (
        not ev.compatible,
        ev.experimental,
        -ev.score,
        ev.option != engine.default_model_option,
        need,
        ev.engine,
    )


def select(
    package: ModelPackage,
    report: HardwareReport,
    *,
    engine: str | None = None,
    option: str | None = None,
    context: int | None = None,
    force: bool = False,
    measurements: Sequence[Any] | None = None,
    objective: str = "decode",
) -> Selection:
    """Pick the engine (or check the one named) and its model option.

    ``force`` accepts a named engine even when it is incompatible (the user insisted).
    ``measurements``: ``famous bench``'s figures for this machine (rule 6).
    """
    evaluations = evaluate_all(package, report, context)
    measured = None
    if measurements:
        names = {ev.engine for ev in evaluations if ev.compatible and not ev.experimental}
        names |= {engine} if engine in package.engines else set()
        measured = _measured(package, report, context, measurements, objective, option, names)
    if engine is not None:
        if engine not in package.engines:
            raise UnknownEngine(package.name, engine, list(package.engines))
        best_variant = measured.best_of(engine) if measured and option is None else None
        option = best_variant.variant if best_variant else option
        chosen = evaluate(package, package.engines[engine], report, context, option)
        evaluations = [chosen if ev.engine == engine else ev for ev in evaluations]
        if not chosen.compatible and not force:
            raise NoCompatibleEngine(
                package.name,
                [chosen],
                f"engine {engine!r} of {package.name!r} cannot run here "
                "(use --force to try anyway):",
            )
        name = chosen.option or option or package.engines[engine].default_model_option
        return Selection(
            package=package.name,
            engine=package.engines[engine],
            option_name=name,
            option=package.option(name),
            evaluation=chosen,
            evaluations=evaluations,
            pinned=True,
            measured=measured,
            environment=engine_environment(package.engines[engine], report, _matched(chosen)),
        )
    if measured is not None:
        return _measured_selection(package, report, context, measured, evaluations)
    candidates = [ev for ev in evaluations if ev.compatible and not ev.experimental]
    if option is not None:
        candidates = [
            evaluate(package, package.engines[ev.engine], report, context, option)
            for ev in candidates
            if option in package.engines[ev.engine].model_options
        ]
        candidates = [ev for ev in candidates if ev.compatible]
    if not candidates:
        raise NoCompatibleEngine(package.name, evaluations)
    best = min(candidates, key=lambda ev: _rank(ev, package))
    assert best.option is not None
    return Selection(
        package=package.name,
        engine=package.engines[best.engine],
        option_name=best.option,
        option=package.option(best.option),
        evaluation=best,
        evaluations=evaluations,
        environment=engine_environment(package.engines[best.engine], report, _matched(best)),
    )


def _measured(
    package: ModelPackage,
    report: HardwareReport,
    context: int | None,
    measurements: Sequence[Any],
    objective: str,
    option: str | None,
    names: set[str],
) -> MeasuredRanking | None:
    """Rank the measured engine × variants of ``names`` that fit here (``option`` only,
    when one is asked for); measurements of other machines must be filtered out before."""

    def runs_here(engine: str, variant: str) -> bool:
        manifest = package.engines.get(engine)
        if manifest is None or engine not in names or variant not in manifest.model_options:
            return False
        if option is not None and variant != option:
            return False
        return evaluate(package, manifest, report, context, variant).compatible

    return rank(measurements, objective, runs_here)


def _measured_selection(
    package: ModelPackage,
    report: HardwareReport,
    context: int | None,
    measured: MeasuredRanking,
    evaluations: list[EngineEvaluation],
) -> Selection:
    """Rule 6: the measured winner, evaluated with the variant that won."""
    win = measured.winner
    manifest = package.engines[win.engine]
    chosen = evaluate(package, manifest, report, context, win.variant)
    return Selection(
        package=package.name,
        engine=manifest,
        option_name=win.variant,
        option=package.option(win.variant),
        evaluation=chosen,
        evaluations=[chosen if ev.engine == win.engine else ev for ev in evaluations],
        measured=measured,
        environment=engine_environment(manifest, report, _matched(chosen)),
    )
