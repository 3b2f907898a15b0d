"""A pull with no terminal says how it is going, in plain lines (a log, CI, a pipe)."""

from __future__ import annotations

import io
import os
import re
import subprocess
import sys
from pathlib import Path

from builders import gguf_repo
from hub_server import HubServer, environment

from famous.hub.progress import LineProgress

SRC = str(Path(__file__).resolve().parents[2] / "src")


def test_pull_without_a_terminal_prints_progress_lines(hub: HubServer, famous_home: Path) -> None:
    hub.add_repo("org/Tiny-GGUF", gguf_repo(payload=3 << 20))
    hub.faults.rate["tiny-q4_k_m.gguf"] = 6 << 20  # half a second: several tenths to report
    env = {**os.environ, **environment(hub), "FAMOUS_HOME": str(famous_home), "PYTHONPATH": SRC}
    out = subprocess.run(
        [sys.executable, "-m", "famous", "pull", "org/Tiny-GGUF"],
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert out.returncode == 0, out.stderr
    lines = out.stderr.splitlines()
    assert "\r" not in out.stderr and "\x1b" not in out.stderr  # no bars, no escape codes
    assert lines[0] == "fetching 1 file, 3.0 MiB"
    assert lines[1] == "tiny-q4_k_m.gguf: 3.0 MiB"
    step = re.compile(r"tiny-q4_k_m\.gguf: \d+% .* of 3\.0 MiB, .*/s")
    steps = [ln for ln in lines if step.fullmatch(ln)]
    assert len(steps) >= 3, out.stderr
    assert re.fullmatch(r"tiny-q4_k_m\.gguf: done, 3\.0 MiB in [\d.]+s \(.*/s\)", lines[-2])
    assert lines[-1].startswith("fetched 3.0 MiB in ")
    assert "q4_k_m" in out.stdout  # the result still goes to stdout


def test_quiet_and_machine_output_stay_silent(hub: HubServer, cli) -> None:
    hub.add_repo("org/Tiny-GGUF", gguf_repo())
    res = cli("pull", "org/Tiny-GGUF", "--quiet")
    assert res.exit_code == 0 and res.stderr == ""
    hub.add_repo("org/Other-GGUF", gguf_repo())
    res = cli("pull", "org/Other-GGUF", "--format", "json")
    assert res.exit_code == 0 and res.stderr == ""


class _Clock:
    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


def test_lines_every_tenth_or_every_interval() -> None:
    out, clock = io.StringIO(), _Clock()
    progress = LineProgress(out, interval=5.0, clock=clock)
    progress.begin(1000, 1)
    progress.file("m.gguf", 1000, 0)
    for _ in range(9):  # 9 bytes a second: the slow link gets a line every 5 s
        clock.now += 1
        progress.advance("m.gguf", 9)
    progress.advance("m.gguf", 300 - 81)  # 30%: one line, not three
    clock.now += 1
    progress.advance("m.gguf", 700)
    progress.done("m.gguf")
    progress.end()
    assert out.getvalue().splitlines() == [
        "fetching 1 file, 1000 B",
        "m.gguf: 1000 B",
        "m.gguf: 4% 45 B of 1000 B, 9 B/s",
        "m.gguf: 30% 300 B of 1000 B, 33 B/s",
        "m.gguf: done, 1000 B in 10.0s (100 B/s)",
        "fetched 1000 B in 10.0s (100 B/s)",
    ]


def test_resumed_and_restarted_files_say_so() -> None:
    out, clock = io.StringIO(), _Clock()
    progress = LineProgress(out, clock=clock)
    progress.file("m.gguf", 2 << 20, 1 << 20)
    clock.now = 2
    progress.advance("m.gguf", 1 << 19)  # 75%: the rate counts only this session's bytes
    progress.restart("m.gguf")
    assert out.getvalue().splitlines() == [
        "m.gguf: 2.0 MiB, resuming at 1.0 MiB",
        "m.gguf: 75% 1.5 MiB of 2.0 MiB, 256.0 KiB/s",
        "m.gguf: starting over",
    ]
