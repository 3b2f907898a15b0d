"""Where famous keeps things. Everything lives under one root, ``FAMOUS_HOME``.

Default: the platform's user data directory (``~/.local/share/famous`` on Linux).
"""

from __future__ import annotations

import os
from pathlib import Path


def famous_home() -> Path:
    """The root of famous's state; not created here (read-only commands must not write)."""
    env = os.environ.get("FAMOUS_HOME")
    if env:
        return Path(env).expanduser()
    from platformdirs import user_data_dir

    return Path(user_data_dir("famous", appauthor=False))


def models_dir() -> Path:
    """Downloaded and imported artifacts, one folder per artifact."""
    return famous_home() / "models"


def catalog_path() -> Path:
    """The SQLite catalog of artifacts and deployments."""
    return famous_home() / "catalog.db"


def responses_path() -> Path:
    """Stored answers of the Responses API (``famous.store.responses``), kept apart from
    the catalog: conversations are users' data, pruned on their own schedule."""
    return famous_home() / "responses.db"


def user_config_path() -> Path:
    """User-level configuration written by ``famous set``."""
    return famous_home() / "config.yaml"


def logs_dir() -> Path:
    return famous_home() / "logs"


def run_dir() -> Path:
    """Runtime state of the gateway and engine processes (pids, ports)."""
    return famous_home() / "run"
