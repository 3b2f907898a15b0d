"""Byte sizes as people write them ("4GiB", "512 MB", 1073741824) and as famous prints them."""

from __future__ import annotations

import re

_UNITS = {
    "": 1,
    "b": 1,
    "k": 1000,
    "kb": 1000,
    "m": 1000**2,
    "mb": 1000**2,
    "g": 1000**3,
    "gb": 1000**3,
    "t": 1000**4,
    "tb": 1000**4,
    "ki": 1024,
    "kib": 1024,
    "mi": 1024**2,
    "mib": 1024**2,
    "gi": 1024**3,
    "gib": 1024**3,
    "ti": 1024**4,
    "tib": 1024**4,
}
_SIZE = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*([a-zA-Z]*)\s*$")


def parse_size(value: int | float | str) -> int:
    """Return a size in bytes; raises ValueError with the accepted forms on bad input."""
    if isinstance(value, bool):
        raise ValueError(f"expected a size such as 4GiB or 512MB, got {value!r}")
    if isinstance(value, int | float):
        if value < 0:
            raise ValueError(f"a size cannot be negative: {value}")
        return int(value)
    match = _SIZE.match(str(value))
    unit = match.group(2).lower() if match else None
    if not match or unit not in _UNITS:
        raise ValueError(f"expected a size such as 4GiB, 512MB or 1073741824, got {value!r}")
    return int(float(match.group(1)) * _UNITS[unit])


def format_size(n: int | None, decimals: int = 1) -> str:
    """Binary units with one decimal: 4.0 GiB, 512.0 MiB."""
    if n is None:
        return "-"
    size = float(n)
    for unit in ("B", "KiB", "MiB", "GiB", "TiB"):
        if abs(size) < 1024 or unit == "TiB":
            return f"{size:.0f} {unit}" if unit == "B" else f"{size:.{decimals}f} {unit}"
        size /= 1024
    raise AssertionError("unreachable")


def format_sizes(a: int, b: int) -> tuple[str, str]:
    """Two sizes people compare, with enough decimals that unequal ones never print alike:
    8.0 GiB against 7.98 GiB is '8.00 GiB' and '7.98 GiB', not twice '8.0 GiB'."""
    for decimals in (1, 2, 3):
        left, right = format_size(a, decimals), format_size(b, decimals)
        if left != right or a == b:
            return left, right
    return f"{a} B", f"{b} B"


def parse_hex_id(value: int | str) -> int:
    """PCI / arm64 ids: '10de', '0x10de' or an int (taken as written, so YAML 0x10de works)."""
    if isinstance(value, bool):
        raise ValueError(f"expected a hex id such as 0x10de, got {value!r}")
    if isinstance(value, int):
        return value
    text = str(value).strip().lower()
    text = text.removeprefix("0x")
    if not text or not re.fullmatch(r"[0-9a-f]+", text):
        raise ValueError(f"expected a hex id such as 0x10de or 10de, got {value!r}")
    return int(text, 16)


def format_duration(seconds: float | None) -> str:
    """12s, 3m05s, 2h07m: an uptime or a build time for people."""
    if seconds is None:
        return "-"
    seconds = int(seconds)
    if seconds < 60:
        return f"{seconds}s"
    if seconds < 3600:
        return f"{seconds // 60}m{seconds % 60:02d}s"
    return f"{seconds // 3600}h{seconds % 3600 // 60:02d}m"
