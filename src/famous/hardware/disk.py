"""Size of the disk where famous keeps models (``FAMOUS_HOME``), never creating that folder."""

from __future__ import annotations

from famous.hardware.host import Host, ProbeError
from famous.hardware.report import DiskInfo
from famous.store.paths import famous_home


def detect_disk(host: Host, warnings: list[str]) -> DiskInfo | None:
    """Total/available bytes of the disk holding ``famous_home()``; None when not captured."""
    home = famous_home()
    try:
        usage = host.disk_usage(home)
    except ProbeError as exc:
        warnings.append(str(exc))
        return None
    if usage is None:
        return None
    return DiskInfo(
        path=usage.path, total_bytes=usage.total_bytes, available_bytes=usage.available_bytes
    )
