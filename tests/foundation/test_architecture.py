"""The shape of the code, checked: the layer contracts in pyproject.toml (import-linter, a
tool written for exactly this: the edges over services over the domain, genai a library
that imports nothing of famous but the error root, no import cycles between siblings, even
through function-level imports), and no long functions where the edges and services live.
"""

from __future__ import annotations

import ast
import os
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
SRC = REPO / "src" / "famous"
MAX_FUNCTION_LINES = 80


def test_import_contracts_hold() -> None:
    env = {**os.environ, "PYTHONPATH": str(REPO / "src")}
    linter = Path(sys.executable).with_name("lint-imports")
    result = subprocess.run(
        [str(linter), "--config", str(REPO / "pyproject.toml"), "--no-cache"],
        cwd=REPO,
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert result.returncode == 0, result.stdout[-6000:] + result.stderr[-2000:]
    assert "0 broken" in result.stdout


def _long_functions(folder: Path) -> list[str]:
    found = []
    for path in sorted(folder.rglob("*.py")):
        tree = ast.parse(path.read_text(), filename=str(path))
        for node in ast.walk(tree):
            if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef):
                body_start = node.body[0].lineno  # a long signature of options is not logic
                length = (node.end_lineno or body_start) - body_start + 1
                if length > MAX_FUNCTION_LINES:
                    found.append(f"{path.relative_to(SRC)}:{node.lineno} {node.name} ({length})")
    return found


def test_no_long_functions_in_the_edges_and_services() -> None:
    long = [f for folder in ("serve", "cli", "services") for f in _long_functions(SRC / folder)]
    assert long == [], f"functions over {MAX_FUNCTION_LINES} lines: {long}"
