"""Where the running gateway can be found (``FAMOUS_HOME/run/gateway.json``), and the
install's admin token (``FAMOUS_HOME/admin-token``).

Light on purpose (standard library only): ``famous status``, ``ps``, ``stop`` and ``run``
read it to find the gateway without importing the web stack. Whether the recorded gateway
really answers is asked by ``famous.services.gateway.running_gateway``.
"""

from __future__ import annotations

import contextlib
import json
import os
from dataclasses import asdict, dataclass
from pathlib import Path

from famous.store.paths import famous_home, run_dir

DEFAULT_HOST = "127.0.0.1"
DEFAULT_PORT = 8324
LOCAL_HOSTS = ("127.0.0.1", "localhost", "::1")


@dataclass
class GatewayInfo:
    pid: int
    host: str
    port: int
    started_at: float
    auth: bool = False

    @property
    def url(self) -> str:
        host = "127.0.0.1" if self.host in ("0.0.0.0", "") else self.host
        host = f"[{host}]" if ":" in host else host
        return f"http://{host}:{self.port}"


def admin_token_path() -> Path:
    return famous_home() / "admin-token"


def admin_token(create: bool = False) -> str | None:
    """The install's admin secret (``FAMOUS_HOME/admin-token``, mode 0600): the gateway's
    admin routes need it, or the API key, even on loopback; the CLI reads it from here."""
    path = admin_token_path()
    try:
        return path.read_text().strip() or None
    except FileNotFoundError:
        if not create:
            return None
    import secrets

    path.parent.mkdir(parents=True, exist_ok=True)
    try:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    except FileExistsError:  # another process made it first
        return path.read_text().strip() or None
    with os.fdopen(fd, "w") as f:
        f.write(secrets.token_urlsafe(32) + "\n")
    return path.read_text().strip()


def state_path() -> Path:
    return run_dir() / "gateway.json"


def write(info: GatewayInfo) -> None:
    """Atomically record the gateway (temp file + rename)."""
    path = state_path()
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(f".{os.getpid()}.tmp")
    tmp.write_text(json.dumps(asdict(info)))
    os.replace(tmp, path)


def clear(pid: int | None = None) -> None:
    """Remove the record (only our own, when ``pid`` is given)."""
    info = read()
    if info is None or pid is None or info.pid == pid:
        with contextlib.suppress(FileNotFoundError):
            state_path().unlink()


def read() -> GatewayInfo | None:
    try:
        data = json.loads(state_path().read_text())
        return GatewayInfo(**data)
    except (OSError, ValueError, TypeError):
        return None
