"""Importing famous.genai's kernels changes nothing in the process: the torch hooks the
decode fast path needs are installed by its first plan. (What genai may import, and that
it has no import cycles, is tests/foundation/test_architecture.py's import-linter check.)"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

GENAI = Path(__file__).resolve().parents[2] / "src" / "famous" / "genai"


def test_importing_the_kernels_installs_no_torch_hooks() -> None:
    code = (
        "import torch.nn.modules.module as m\n"
        "before = (len(m._global_module_registration_hooks),"
        " len(m._global_parameter_registration_hooks),"
        " len(m._global_buffer_registration_hooks))\n"
        "import famous.genai.kernels.decode, famous.genai.pipeline\n"
        "after = (len(m._global_module_registration_hooks),"
        " len(m._global_parameter_registration_hooks),"
        " len(m._global_buffer_registration_hooks))\n"
        "assert before == after, (before, after)\n"
    )
    env = {**os.environ, "PYTHONPATH": str(GENAI.parent.parent)}
    result = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, env=env, timeout=120
    )
    assert result.returncode == 0, result.stderr[-2000:]
