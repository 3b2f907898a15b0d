"""Wall time of read-only commands as a ratio to `python -c pass`, measured in the same run.

Run: python benchmarks/control_plane.py [--runs N]
Goal (foundation issue): `famous show-machine` and `famous engines MODEL` ≤ 3× `python -c pass`.
"""

from __future__ import annotations

import argparse
import os
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


def wall(argv: list[str], runs: int, env: dict[str, str]) -> float:
    """Median wall time of ``runs`` runs (after one warm-up run for the page cache)."""
    subprocess.run(argv, env=env, capture_output=True, check=True)
    times = []
    for _ in range(runs):
        start = time.perf_counter()
        subprocess.run(argv, env=env, capture_output=True, check=True)
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=15)
    parser.add_argument("--model", default="qwen2.5-0.5b-instruct")
    args = parser.parse_args()
    famous = shutil.which("famous")
    cli = [famous] if famous else [sys.executable, "-m", "famous"]
    env = {**os.environ, "FAMOUS_HOME": tempfile.mkdtemp(prefix="famous-bench-")}
    baseline = wall([sys.executable, "-c", "pass"], args.runs, env)
    print(f"python -c pass: {baseline * 1000:.0f} ms (median of {args.runs})")
    # What any Typer CLI costs before it does anything (typer >= 0.20 imports pydantic).
    floor = wall([sys.executable, "-c", TYPER_FLOOR], args.runs, env)
    print(f"typer, empty command: {floor * 1000:.0f} ms = {floor / baseline:.2f}x python")
    worst = 0.0
    for command in (["show-machine"], ["engines", args.model], ["models"]):
        t = wall([*cli, *command], args.runs, env)
        ratio = t / baseline
        worst = max(worst, ratio)
        verdict = "ok" if ratio <= GOAL else "OVER GOAL"
        print(f"famous {' '.join(command)}: {t * 1000:.0f} ms = {ratio:.2f}x python ({verdict})")
    print(f"worst ratio {worst:.2f}x (goal <= {GOAL}x)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
