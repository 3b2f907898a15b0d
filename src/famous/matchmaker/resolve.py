"""Which engine runs MODEL on this machine: package + machine + the user's pin → Selection."""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from famous.matchmaker.select import NoCompatibleEngine, Selection, select
from famous.store.selections import PinnedEngine, pinned_engine

if TYPE_CHECKING:
    from famous.hardware.report import HardwareReport
    from famous.manifests.schema import ModelPackage


def machine_report(root: str | None = None) -> HardwareReport:
    """Detect the machine: the real one, or a captured root (``--root`` / FAMOUS_HARDWARE_ROOT)."""
    from famous.hardware.detector import detect
    from famous.hardware.host import Host

    return detect(Host.from_env(root))


@dataclass(frozen=True)
class Resolved:
    package: ModelPackage
    report: HardwareReport
    selection: Selection
    pin: PinnedEngine | None


def resolve_selection(
    model: str,
    *,
    engine: str | None = None,
    option: str | None = None,
    root: str | None = None,
    report: HardwareReport | None = None,
    package: ModelPackage | None = None,
    force: bool = False,
    measured: bool = True,
) -> Resolved:
    """Select for ``model``; an engine pinned with ``use-engine`` applies unless one is named.
    ``famous bench``'s measurements of this machine rank the engines (``measured=False``,
    or ``famous set selection.measured=false``, ranks by manifest score alone).

    A pin that no longer fits this machine raises NoCompatibleEngine, telling how to unpin.
    """
    if package is None:
        from famous.manifests.loader import find_package

        package = find_package(model)
    report = report or machine_report(root)
    figures, objective = measured_figures(package.name, report) if measured else ([], "decode")
    ranking = {"measurements": figures, "objective": objective}
    pin = pinned_engine(package.name) if engine is None else None
    if pin is not None and pin.engine in package.engines:
        try:
            selection = select(
                package,
                report,
                engine=pin.engine,
                option=option,
                force=force or pin.forced,
                **ranking,
            )
        except NoCompatibleEngine as exc:
            raise NoCompatibleEngine(
                package.name,
                exc.evaluations,
                f"engine {pin.engine!r} was pinned with `famous use-engine` but cannot run here; "
                f"run `famous use-engine {package.name} --auto` to let famous choose:",
            ) from None
        return Resolved(package, report, selection, pin)
    selection = select(package, report, engine=engine, option=option, force=force, **ranking)
    return Resolved(package, report, selection, None)


def measured_figures(model: str, report: HardwareReport) -> tuple[list[Any], str]:
    """``famous bench``'s measurements of ``model`` on this machine and the objective to rank
    them by (``selection.objective``); none when ``selection.measured`` is off. The user's
    configuration is read only when there are measurements: most machines have none."""
    from famous.hardware.fingerprint import machine_fingerprint
    from famous.store.db import CatalogError
    from famous.store.measurements import measurements_for

    try:
        found = measurements_for(model, machine_fingerprint(report))
    except CatalogError:  # an unreadable catalog: the scores still choose
        return [], "decode"
    if not found:
        return [], "decode"
    from famous.matchmaker.measured import check_objective
    from famous.store.config import ConfigError, resolve

    settings = resolve()
    if not settings["selection.measured"].value:
        return [], "decode"
    objective = str(settings["selection.objective"].value)
    try:
        return found, check_objective(objective)
    except ValueError as exc:
        raise ConfigError(f"{exc} (famous set selection.objective=decode)") from None
