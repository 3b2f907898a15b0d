"""YAML loading that remembers where each value came from, for errors with line numbers.

PyYAML's composer gives nodes with marks; we build plain Python values from them and keep
a map ``path tuple -> line``. Ids such as ``vendor-id: 1002`` are kept as the text written
(hex), never read as decimal integers. Duplicate keys are errors, not silent overwrites.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import yaml

from famous.manifests.errors import ManifestError, ManifestProblem

Lines = dict[tuple[Any, ...], int]

# Keys whose scalar values are hex ids: keep the written text so "1002" means 0x1002.
HEX_KEYS = frozenset({"vendor-id", "device-id", "implementer-id", "part-number"})

# libyaml's parser when available (10× faster); its nodes carry the same marks.
_Loader = getattr(yaml, "CSafeLoader", yaml.SafeLoader)
_loader = yaml.SafeLoader("")


def _build(node: yaml.Node, path: tuple[Any, ...], lines: Lines, file: Path, raw: bool) -> Any:
    lines[path] = node.start_mark.line + 1
    if isinstance(node, yaml.MappingNode):
        out: dict[Any, Any] = {}
        for key_node, value_node in node.value:
            key = _loader.construct_object(key_node)
            if key in out:
                problem = ManifestProblem(
                    file,
                    key_node.start_mark.line + 1,
                    ".".join(map(str, (*path, key))),
                    f"duplicate key {key!r}",
                )
                raise ManifestError([problem])
            lines[(*path, key)] = key_node.start_mark.line + 1
            out[key] = _build(value_node, (*path, key), lines, file, key in HEX_KEYS)
        return out
    if isinstance(node, yaml.SequenceNode):
        return [_build(n, (*path, i), lines, file, raw) for i, n in enumerate(node.value)]
    if raw and node.tag == "tag:yaml.org,2002:int":
        return node.value
    return _loader.construct_object(node)


def load_yaml(file: Path) -> tuple[Any, Lines]:
    """Parse ``file``; a syntax error becomes a ManifestError with its line."""
    try:
        text = file.read_text(encoding="utf-8")
    except OSError as exc:
        raise ManifestError([ManifestProblem(file, None, None, f"cannot read: {exc}")]) from exc
    try:
        node = yaml.compose(text, Loader=_Loader)
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        line = mark.line + 1 if mark else None
        message = f"invalid YAML: {getattr(exc, 'problem', None) or exc}"
        raise ManifestError([ManifestProblem(file, line, None, message)]) from exc
    lines: Lines = {}
    if node is None:
        return None, lines
    return _build(node, (), lines, file, raw=False), lines


def line_of(lines: Lines, loc: tuple[Any, ...]) -> int | None:
    """The line of the deepest known prefix of ``loc`` (pydantic error locations)."""
    for end in range(len(loc), -1, -1):
        if loc[:end] in lines:
            return lines[loc[:end]]
    return None
