"""What famous knows about models and engines, as plain data: the machine, the model
packages, one model with what is installed, its engines scored on this machine, and the
user's pin. The CLI (``models``, ``show-model``, ``engines``, ``show-engine``, ``use-engine``,
``show-machine``) prints it; the gateway's console API (``/famous/api/catalog``) answers it.
The machine itself comes from ``famous.services.machine``.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from famous.errors import Incompatible, NotFound
from famous.matchmaker.select import UnknownEngine
from famous.plain import to_plain

if TYPE_CHECKING:
    from famous.hardware.report import HardwareReport
    from famous.manifests.schema import EngineManifest, ModelPackage
    from famous.matchmaker.measured import MeasuredRanking
    from famous.matchmaker.select import EngineEvaluation


# -- packages ----------------------------------------------------------------------------------


def _package_dirs() -> list[tuple[Path, str]]:
    """(directory, source) of every package: built-in ones, then those under FAMOUS_HOME."""
    from famous.manifests.locate import (
        builtin_package_names,
        builtin_packages_dir,
        user_package_names,
        user_packages_dir,
    )

    builtin = builtin_package_names()
    return [(builtin_packages_dir() / n, "built-in") for n in builtin] + [
        (user_packages_dir() / n, "user") for n in user_package_names() if n not in builtin
    ]


def package_rows() -> list[dict[str, Any]]:
    """One row per model package (``famous models``), from the packages' snapshots when
    current; a package whose engines do not validate is still listed by its model.yaml."""
    from famous.manifests.errors import ManifestError
    from famous.manifests.locate import engine_names
    from famous.manifests.snapshot import read_package

    rows = []
    for directory, source in _package_dirs():
        try:
            model = read_package(str(directory)).model
        except ManifestError:
            from famous.manifests.loader import load_model_manifest

            model = load_model_manifest(directory)
        rows.append(
            {
                "name": model.name,
                "capabilities": list(model.capabilities),
                "license": model.license,
                "engines": engine_names(directory),
                "description": model.description,
                "source": source,
            }
        )
    return rows


def _summary(description: str, width: int = 80) -> str:
    first = description.strip().split("\n", 1)[0]
    sentence = first.split(". ", 1)[0].rstrip(".")
    return sentence if len(sentence) <= width else sentence[: width - 1] + "…"


def catalog(running: set[str]) -> list[dict[str, Any]]:
    """Every model the user can pick: the packages (``source`` builtin or built), then
    models installed without a package (``pulled`` from a Hub repo, ``imported``); each with
    whether it is installed, its pinned engine and whether it runs (a name in ``running``)."""
    from famous.store.artifacts import list_artifacts
    from famous.store.selections import pinned_engine

    artifacts = list_artifacts()
    by_model: dict[str, list[Any]] = {}
    for a in artifacts:
        by_model.setdefault(a.model, []).append(a)
    rows = []
    for row in package_rows():
        name = row["name"]
        pin = pinned_engine(name)
        installed = by_model.get(name, [])
        rows.append(
            {
                **row,
                "summary": _summary(row["description"]),
                "source": "builtin" if row["source"] == "built-in" else "built",
                "installed": bool(installed),
                "variants": sorted({f"{a.engine}/{a.variant}" for a in installed}),
                "pinned": pin.engine if pin else None,
                "running": name in running,
            }
        )
    known = {r["name"] for r in rows}
    for name, items in by_model.items():
        if name in known:
            continue
        first = items[0]
        rows.append(
            {
                "name": name,
                "summary": first.repo_id or first.path,
                "description": None,
                "source": "imported" if first.source == "import" else "pulled",
                "capabilities": [],
                "license": None,
                "engines": sorted({a.engine for a in items}),
                "installed": True,
                "variants": sorted({f"{a.engine}/{a.variant}" for a in items}),
                "pinned": None,
                "running": name in running,
            }
        )
    return rows


def installed_rows(model: str) -> list[dict[str, Any]]:
    """What ``famous list MODEL --format json`` prints: its artifacts, files and checksums."""
    from famous.store.artifacts import installed_artifacts

    return to_plain(installed_artifacts(model))


def model_data(package: ModelPackage) -> dict[str, Any]:
    """``famous show-model``'s data for a package."""
    return {
        "model": package.model,
        "engines": sorted(package.engines),
        "source": package.source,
        "installed": installed_rows(package.name),
    }


def named_package(model: str) -> ModelPackage | None:
    """The package of this name (built-in, else under FAMOUS_HOME), never a path; None when
    there is none (a Hub repo or an import may still be installed under the name)."""
    from famous.manifests.loader import find_package, package_dir

    if "/" in model or "\\" in model or model in (".", "..") or model.startswith("~"):
        return None
    return find_package(model) if package_dir(model) is not None else None


# -- engines -----------------------------------------------------------------------------------


def engine_row(ev: EngineEvaluation, selected: str | None) -> dict[str, Any]:
    """One engine on this machine: score, verdict, devices with reasons, and each memory
    estimate with the sentence ``famous show-engine`` prints (``explain``)."""
    row = {**to_plain(ev), "verdict": ev.verdict, "selected": ev.engine == selected}
    row["memory"] = [
        {**to_plain(m), "variant": m.option, "explain": m.explain()} for m in ev.memory
    ]
    return row


@dataclass(frozen=True)
class EngineChoice:
    evaluations: list[EngineEvaluation]
    selected: str | None  # None: no engine runs here
    measured: MeasuredRanking | None = None  # `famous bench`'s figures that ranked them
    pinned: bool = False  # the selected engine is the user's pin

    def rows(self) -> list[dict[str, Any]]:
        return [engine_row(ev, self.selected) for ev in self.evaluations]


def engine_choice(model: str, package: ModelPackage, report: HardwareReport) -> EngineChoice:
    """Every engine of ``package`` evaluated here, and the one famous would use (the pinned
    one when it runs here; none when no engine can)."""
    from famous.matchmaker import NoCompatibleEngine, evaluate_all
    from famous.services.selection import resolve_selection

    try:
        chosen = resolve_selection(model, package=package, report=report).selection
        return EngineChoice(chosen.evaluations, chosen.engine.name, chosen.measured, chosen.pinned)
    except NoCompatibleEngine:
        return EngineChoice(evaluate_all(package, report), None)


@dataclass(frozen=True)
class EngineDetail:
    """``famous show-engine``: one engine's manifest, evaluation and configuration."""

    manifest: EngineManifest
    evaluation: EngineEvaluation
    settings: dict[str, Any]  # key -> famous.store.config setting (value, layer)
    keys: dict[str, str]  # the runtime's keys, each with what it does
    measured: str | None = None  # what `famous bench` measured of it vs the runner-up

    def data(self) -> dict[str, Any]:
        return {
            "manifest": self.manifest,
            "evaluation": {**to_plain(self.evaluation), "verdict": self.evaluation.verdict},
            "configuration": {k: to_plain(s) for k, s in self.settings.items()},
            "runtime-keys": self.keys,
            **({"measured": self.measured} if self.measured else {}),
        }


def engine_detail(
    model: str, package: ModelPackage, engine: str | None, report: HardwareReport
) -> EngineDetail:
    """One engine of ``package`` (default: the one famous would use) explained here."""
    from famous.matchmaker import UnknownEngine, evaluate
    from famous.services.selection import resolve_selection, runtime_settings
    from famous.store.config import resolve

    ranking = None
    if engine is None:
        chosen = resolve_selection(model, package=package, report=report).selection
        engine, ranking = chosen.engine.name, chosen.measured
    elif engine in package.engines:
        ranking = _measured_ranking(model, package, report)
    if engine not in package.engines:
        raise UnknownEngine(package.name, engine, sorted(package.engines))
    manifest = package.engines[engine]
    keys = runtime_settings(manifest.runtime)
    settings = resolve(manifest.configuration, model=package.name, runtime_keys=keys)
    note = ranking.note_for(engine) if ranking is not None else None
    return EngineDetail(manifest, evaluate(package, manifest, report), settings, keys, note)


def _measured_ranking(
    model: str, package: ModelPackage, report: HardwareReport
) -> MeasuredRanking | None:
    """How ``famous bench``'s figures rank ``package``'s engines here (None without any)."""
    from famous.matchmaker import NoCompatibleEngine
    from famous.matchmaker.resolve import measured_figures
    from famous.services.selection import resolve_selection

    if not measured_figures(package.name, report)[0]:
        return None
    try:
        return resolve_selection(model, package=package, report=report).selection.measured
    except NoCompatibleEngine:
        return None


# -- pins --------------------------------------------------------------------------------------


class EngineNotInPackage(UnknownEngine):
    """An engine the package does not have: a bad request to the gateway (404 is for the
    model), not found to the CLI."""

    status = 400
    code = "unknown_engine"
    param = "engine"


class EngineIncompatible(Incompatible):
    status = 409
    code = "engine_incompatible"
    param = "engine"


def pin_data(model: str) -> dict[str, Any] | None:
    from famous.store.selections import pinned_engine

    pin = pinned_engine(model)
    return {"engine": pin.engine, "forced": pin.forced, "chosen_at": pin.chosen_at} if pin else None


def pin(
    package: ModelPackage, engine: str, report: HardwareReport, force: bool = False
) -> dict[str, Any]:
    """Pin ``engine`` for ``package`` (``famous use-engine``); returns the pin. An engine the
    package lacks, or one that cannot run here without ``force``, is refused."""
    from famous.matchmaker.select import NoCompatibleEngine, select
    from famous.store.selections import pin_engine

    if engine not in package.engines:
        raise EngineNotInPackage(package.name, engine, sorted(package.engines))
    try:
        selection = select(package, report, engine=engine, force=force)
    except NoCompatibleEngine as exc:
        raise EngineIncompatible(str(exc), "pin it anyway: --force (API: force: true)") from None
    pin_engine(package.name, engine, forced=force and not selection.evaluation.compatible)
    pinned = pin_data(package.name)
    assert pinned is not None
    return pinned


def unpin(model: str) -> bool:
    """Back to automatic choice; True when a pin was removed."""
    from famous.store.selections import unpin_engine

    return unpin_engine(model)


def model_detail(model: str, report: HardwareReport) -> dict[str, Any]:
    """One model for the console: show-model's data, its engines scored here, its pin and
    what is installed. NotFound when famous has neither a package nor an install of it."""
    package = named_package(model)
    installed = installed_rows(model)
    if package is None:
        if not installed:
            raise ModelUnknown(model)
        return {
            "model": {"model": model, "installed": installed},
            "engines": [],
            "selected": None,
            "pinned": None,
            "installed": installed,
        }
    choice = engine_choice(model, package, report)
    return {
        "model": to_plain(model_data(package)),
        "engines": choice.rows(),
        "selected": choice.selected,
        "pinned": pin_data(package.name),
        "installed": installed,
    }


class ModelUnknown(NotFound):
    code = "model_not_found"
    param = "model"

    def __init__(self, model: str) -> None:
        super().__init__(
            f"no model {model!r}: neither a package nor installed",
            "see GET /famous/api/catalog, or pull it first",
        )
