"""What ``famous models``, ``engines`` and ``show-engine`` print: packages, and engines
scored on this machine."""

from __future__ import annotations

from typing import TYPE_CHECKING

from famous.cli import exits
from famous.cli.render import OutputFormat, emit, print_fields, print_table

if TYPE_CHECKING:
    from famous.matchmaker.measured import MeasuredRanking


def models(fmt: OutputFormat) -> None:
    from famous.services.catalog import package_rows

    data = package_rows()

    def table() -> None:
        rows = [
            (
                d["name"],
                ",".join(d["capabilities"]),
                d["license"],
                len(d["engines"]),
                _clip(d["description"], 60),
            )
            for d in data
        ]
        print_table(["model", "capabilities", "license", "engines", "description"], rows)

    emit(data, fmt, table)


def _clip(text: str, width: int) -> str:
    return text if len(text) <= width else text[: width - 1] + "…"


def engines(model: str, root: str | None, fmt: OutputFormat) -> None:
    from famous.manifests.snapshot import read_package
    from famous.matchmaker.advice import no_engine_message, unused_accelerators
    from famous.services.catalog import engine_choice
    from famous.services.machine import recent_report

    package, report = read_package(model), recent_report(root)
    choice = engine_choice(model, package, report)
    evaluations, selected, measured = choice.evaluations, choice.selected, choice.measured
    data = choice.rows()
    if measured is not None:  # `famous bench` ran here: its figures ranked the engines
        for row in data:
            row["measured"] = measured.note_for(row["engine"])

    def table() -> None:
        rows = [
            (
                ("* " if ev.engine == selected else "  ") + ev.engine,
                ev.vendor,
                ev.summary,
                ev.verdict,
                ev.score,
                ev.option or "-",
            )
            for ev in evaluations
        ]
        headers = ["engine", "vendor", "summary", "compatible", "score", "option"]
        if measured is not None:
            headers.append(OBJECTIVE_COLUMN[measured.objective])
            rows = [
                (*r, _measured_cell(measured, ev.engine))
                for r, ev in zip(rows, evaluations, strict=True)
            ]
        print_table(headers, rows)
        if measured is not None and selected is not None:
            why = "pinned (famous use-engine)" if choice.pinned else "chosen by measurement"
            print(f"\n{selected} {why}: {measured.note_for(selected) or 'not measured here'}")
        for line in unused_accelerators(report, package.engines.values()):
            print(f"\n{line}")
        if selected is None:
            print("\n" + no_engine_message(package.name, evaluations))

    emit(data, fmt, table)
    if selected is None:
        raise SystemExit(exits.INCOMPATIBLE)


OBJECTIVE_COLUMN = {"decode": "decode tok/s", "throughput": "tok/s (N streams)", "ttft": "ttft ms"}


def _measured_cell(measured: MeasuredRanking, engine: str) -> str:
    best = measured.best_of(engine)
    if best is None:
        return "-"
    return f"{best.value:.0f}" if measured.objective == "ttft" else f"{best.value:.1f}"


def show_engine(model: str, engine: str | None, root: str | None, fmt: OutputFormat) -> None:
    from famous.manifests.snapshot import read_package
    from famous.services.catalog import engine_detail
    from famous.services.machine import recent_report

    detail = engine_detail(model, read_package(model), engine, recent_report(root))
    manifest, ev, settings, keys = detail.manifest, detail.evaluation, detail.settings, detail.keys
    data = detail.data()
    environment = _engine_environment(manifest.runtime, manifest.configuration)
    if environment:
        data["environment"] = environment

    def table() -> None:
        print_fields(
            [
                ("engine", manifest.name),
                ("summary", manifest.summary),
                ("description", manifest.description),
                ("vendor", manifest.vendor),
                ("runtime", manifest.runtime),
                ("experimental", "yes" if manifest.experimental else "no"),
                ("compatible", ev.verdict),
                ("score", ev.score),
                ("model option", ev.option or "-"),
                ("model options", ", ".join(manifest.model_options)),
                *([("measured", detail.measured)] if detail.measured else []),
                *([("environment", environment)] if environment else []),
            ]
        )
        print("\ndevices:")
        for check in ev.devices:
            mark = "ok " if check.matched else "no "
            where = f" -> {check.device} (+{check.score})" if check.matched else ""
            print(f"  [{check.group}] {mark}{check.requirement}{where}")
            for reason in check.reasons:
                print(f"      {reason}")
        print("\nmemory:")
        for m in ev.memory:
            print(f"  {m.explain()}")
        if ev.reasons:
            print("\nnot compatible:")
            for reason in ev.reasons:
                print(f"  - {reason}")
        print("\nconfiguration (famous set KEY=VALUE --model MODEL changes it):")
        for key, s in sorted(settings.items()):
            value = "(runtime default)" if s.value is None else s.value
            doc = f"  - {keys[key]}" if key in keys else ""
            print(f"  {key} = {value}  ({s.layer}){doc}")

    emit(data, fmt, table)


def _engine_environment(runtime: str, configuration: dict) -> str | None:
    """Which Python environment a runtime with one of its own launches from (vLLM)."""
    if runtime != "vllm":
        return None
    from famous.runtimes.vllm import environment_note

    return environment_note(configuration)
