"""Wall time of read-only commands as a ratio to `python -c pass`, measured in the same run.

Run: python benchmarks/control_plane.py [--runs N]
Goal: every read-only command (show-machine, engines, show-engine, models, status, ps, list)
≤ 3× `python -c pass`. Each is timed by wall clock and by CPU time (user + system of the
child), the second being steadier on a loaded machine.
"""

from __future__ import annotations

import argparse
import os
import resource
import shutil
import statistics
import subprocess
import sys
import tempfile
import time

GOAL = 3.0
TYPER_FLOOR = """
import typer
app = typer.Typer()
@app.command()
def noop(x: int = 1) -> None:
    pass
app([], standalone_mode=False)
"""


def wall(argv: list[str], runs: int, env: dict[str, str]) -> tuple[float, float]:
    """Median wall and CPU time of ``runs`` runs (after one warm-up run for the page cache)."""
    subprocess.run(argv, env=env, capture_output=True, check=True)
    walls, cpus = [], []
    for _ in range(runs):
        before = resource.getrusage(resource.RUSAGE_CHILDREN)
        start = time.perf_counter()
        subprocess.run(argv, env=env, capture_output=True, check=True)
        walls.append(time.perf_counter() - start)
        after = resource.getrusage(resource.RUSAGE_CHILDREN)
        cpus.append(after.ru_utime - before.ru_utime + after.ru_stime - before.ru_stime)
    return statistics.median(walls), statistics.median(cpus)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=15)
    parser.add_argument("--model", default="qwen2.5-0.5b-instruct")
    args = parser.parse_args()
    famous = shutil.which("famous")
    cli = [famous] if famous else [sys.executable, "-m", "famous"]
    env = {**os.environ, "FAMOUS_HOME": tempfile.mkdtemp(prefix="famous-bench-")}
    base_wall, base_cpu = wall([sys.executable, "-c", "pass"], args.runs, env)
    print(
        f"python -c pass: {base_wall * 1000:.0f} ms wall, {base_cpu * 1000:.0f} ms CPU "
        f"(median of {args.runs})"
    )
    # What any Typer CLI costs before it does anything (typer >= 0.20 imports pydantic).
    floor, floor_cpu = wall([sys.executable, "-c", TYPER_FLOOR], args.runs, env)
    print(f"typer, empty command: {floor / base_wall:.2f}x wall, {floor_cpu / base_cpu:.2f}x CPU")
    worst = 0.0
    commands = (
        ["show-machine"],
        ["engines", args.model],
        ["show-engine", args.model],
        ["models"],
        ["status"],
        ["ps"],
        ["list"],
    )
    for command in commands:
        t, cpu = wall([*cli, *command], args.runs, env)
        ratio = t / base_wall
        worst = max(worst, ratio)
        verdict = "ok" if ratio <= GOAL else "OVER GOAL"
        print(
            f"famous {' '.join(command)}: {t * 1000:.0f} ms = {ratio:.2f}x wall, "
            f"{cpu / base_cpu:.2f}x CPU ({verdict})"
        )
    print(f"worst wall ratio {worst:.2f}x (goal <= {GOAL}x)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
