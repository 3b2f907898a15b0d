"""Measured selection: rank engines by what ``famous bench`` measured on this machine.

A manifest's score is a guess about silicon; a measurement is what this machine did. When
the catalog holds measurements for this machine's fingerprint, the compatible engine ×
variant that did best on the objective wins (``selection.objective``: ``decode`` tokens
per second at one stream, ``throughput`` over several streams, or ``ttft``, time to the
first token), whatever the scores say. Engines without a measurement rank after measured
ones, by score. Reads plain attributes only (``famous.store.measurements.Measurement``).
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Any, Literal

Objective = Literal["decode", "throughput", "ttft"]

# objective -> (Measurement field, higher is better, unit)
OBJECTIVES: dict[str, tuple[str, bool, str]] = {
    "decode": ("decode_tps", True, "tok/s decode"),
    "throughput": ("throughput_tps", True, "tok/s over all streams"),
    "ttft": ("ttft_ms", False, "ms to first token"),
}


def check_objective(objective: str) -> str:
    """``objective`` when famous knows it; ValueError naming the known ones otherwise."""
    if objective not in OBJECTIVES:
        raise ValueError(
            f"selection objective {objective!r} is not one of: {', '.join(OBJECTIVES)}"
        )
    return objective


def figure(measurement: Any, objective: str) -> float:
    return float(getattr(measurement, OBJECTIVES[objective][0]))


def describe(value: float, objective: str) -> str:
    """``42.0 tok/s decode``, ``180 ms to first token``."""
    unit = OBJECTIVES[objective][2]
    return f"{value:.0f} {unit}" if objective == "ttft" else f"{value:.1f} {unit}"


def regret(best: float, chosen: float, objective: str) -> float:
    """How much worse ``chosen`` is than ``best``, as a share of the best: (best - chosen) /
    best for rates; for TTFT, the same on speed (1 / time), which is (chosen - best) / chosen."""
    if OBJECTIVES[objective][1]:
        return (best - chosen) / best if best > 0 else 0.0
    return (chosen - best) / chosen if chosen > 0 else 0.0


@dataclass(frozen=True)
class MeasuredEntry:
    engine: str
    variant: str
    value: float


@dataclass(frozen=True)
class MeasuredRanking:
    """Measured engine × variants that can run here, best first on ``objective``."""

    objective: str
    entries: list[MeasuredEntry]

    @property
    def winner(self) -> MeasuredEntry:
        return self.entries[0]

    def best_of(self, engine: str) -> MeasuredEntry | None:
        return next((e for e in self.entries if e.engine == engine), None)

    def runner_up(self, engine: str) -> MeasuredEntry | None:
        """The best entry of any other engine."""
        return next((e for e in self.entries if e.engine != engine), None)

    def note_for(self, engine: str) -> str | None:
        """``measured 42.0 tok/s decode (q4_k_m) vs 31.0 for cpu-avx512``; None when
        ``engine`` was not measured here."""
        mine = self.best_of(engine)
        if mine is None:
            return None
        text = f"measured {describe(mine.value, self.objective)} ({mine.variant})"
        other = self.runner_up(engine)
        if other is None:
            return text + "; no other engine measured on this machine"
        ahead = self.entries.index(mine) < self.entries.index(other)
        verb = "vs" if ahead else "behind"
        digits = 0 if self.objective == "ttft" else 1
        return f"{text} {verb} {other.value:.{digits}f} for {other.engine}"

    def as_dict(self) -> dict[str, Any]:
        return {
            "objective": self.objective,
            "entries": [
                {"engine": e.engine, "variant": e.variant, "value": e.value} for e in self.entries
            ],
        }


def rank(
    measurements: Iterable[Any], objective: str, runs_here: Callable[[str, str], bool]
) -> MeasuredRanking | None:
    """The measurements whose engine × variant ``runs_here``, best first (ties: engine,
    then variant name, so the same data always gives the same answer); None when none."""
    field, higher, _ = OBJECTIVES[check_objective(objective)]
    entries = [
        MeasuredEntry(m.engine, m.variant, float(getattr(m, field)))
        for m in measurements
        if runs_here(m.engine, m.variant)
    ]
    if not entries:
        return None
    entries.sort(key=lambda e: (-e.value if higher else e.value, e.engine, e.variant))
    return MeasuredRanking(objective, entries)
