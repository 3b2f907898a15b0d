"""famous.genai is a library: it imports nothing of famous outside itself but the error root,
its modules import one another without cycles (lazy imports included), and importing the
kernels changes nothing in the process."""

from __future__ import annotations

import ast
import os
import subprocess
import sys
from pathlib import Path

GENAI = Path(__file__).resolve().parents[2] / "src" / "famous" / "genai"
ALLOWED_OUTSIDE = {"famous.errors"}


def _module_name(path: Path) -> str:
    parts = path.relative_to(GENAI.parent.parent).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def _famous_imports(node: ast.AST, modules: set[str], found: set[str]) -> set[str]:
    """The famous modules ``node`` imports, at module level or in a function (``if
    TYPE_CHECKING`` blocks excluded: they never run)."""
    for child in ast.iter_child_nodes(node):
        if isinstance(child, ast.If) and "TYPE_CHECKING" in ast.unparse(child.test):
            continue
        if isinstance(child, ast.ImportFrom) and (child.module or "").startswith("famous"):
            for alias in child.names:
                sub = f"{child.module}.{alias.name}"
                found.add(sub if sub in modules else child.module)
        elif isinstance(child, ast.Import):
            found.update(a.name for a in child.names if a.name.startswith("famous"))
        _famous_imports(child, modules, found)
    return found


def _imports() -> dict[str, set[str]]:
    """Every famous module each genai module imports."""
    paths = {_module_name(p): p for p in GENAI.rglob("*.py")}
    return {
        name: _famous_imports(ast.parse(path.read_text(encoding="utf-8")), set(paths), set())
        for name, path in paths.items()
    }


def test_genai_imports_nothing_of_famous_outside_itself() -> None:
    outside = {
        f"{module} imports {target}"
        for module, targets in _imports().items()
        for target in targets
        if not target.startswith("famous.genai") and target not in ALLOWED_OUTSIDE
    }
    assert not outside, sorted(outside)


def test_genai_has_no_import_cycles() -> None:
    graph = _imports()
    cycles = []

    def walk(node: str, path: list[str], done: set[str]) -> None:
        for target in sorted(graph.get(node, ())):
            if target == path[0]:
                cycles.append(" -> ".join([*path, target]))
            elif target in graph and target not in path and target not in done:
                walk(target, [*path, target], done)

    done: set[str] = set()
    for start in sorted(graph):
        walk(start, [start], done)
        done.add(start)
    assert not cycles, cycles


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
