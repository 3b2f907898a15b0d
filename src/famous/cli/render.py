"""One way to print anything: a table for people, JSON or YAML for scripts.

Commands build plain data (pydantic models, dataclasses or dicts) and a table; ``emit`` picks
by --format. No typer here: the read-only commands print through this without loading it.
"""

from __future__ import annotations

import enum
import json
import sys
from collections.abc import Callable, Sequence
from typing import Any

from famous.plain import to_plain


class OutputFormat(enum.StrEnum):
    table = "table"
    json = "json"
    yaml = "yaml"


def emit(data: Any, fmt: OutputFormat, table: Callable[[], None]) -> None:
    if fmt is OutputFormat.json:
        sys.stdout.write(json.dumps(to_plain(data), indent=2) + "\n")
    elif fmt is OutputFormat.yaml:
        import yaml

        sys.stdout.write(yaml.safe_dump(to_plain(data), sort_keys=False))
    else:
        table()


def print_table(
    columns: Sequence[str], rows: Sequence[Sequence[Any]], title: str | None = None
) -> None:
    """A plain aligned table (no box drawing) so output is stable and grep-able."""
    cells = [[("-" if v is None else str(v)) for v in row] for row in rows]
    widths = [len(c) for c in columns]
    for row in cells:
        for i, v in enumerate(row):
            widths[i] = max(widths[i], len(v))
    out = sys.stdout
    if title:
        out.write(title + "\n")
    out.write("  ".join(c.upper().ljust(w) for c, w in zip(columns, widths, strict=True)).rstrip())
    out.write("\n")
    for row in cells:
        out.write("  ".join(v.ljust(w) for v, w in zip(row, widths, strict=True)).rstrip() + "\n")


def print_fields(pairs: Sequence[tuple[str, Any]]) -> None:
    """``key: value`` lines, keys aligned."""
    width = max((len(k) for k, _ in pairs), default=0)
    for key, value in pairs:
        sys.stdout.write(f"{(key + ':').ljust(width + 1)} {'-' if value is None else value}\n")


def fail(message: str, code: int = 1) -> SystemExit:
    """Print an error for people on stderr and return the exit to raise."""
    sys.stderr.write(f"error: {message}\n")
    return SystemExit(code)
