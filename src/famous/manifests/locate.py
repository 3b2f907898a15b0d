"""Where model packages live: built in, under FAMOUS_HOME, or a directory the user names.

No YAML and no pydantic here: the read-only commands find a package before deciding
whether its validated snapshot (``famous.manifests.snapshot``) can stand in for it.
"""

from __future__ import annotations

from pathlib import Path


def builtin_packages_dir() -> Path:
    """The built-in model packages, shipped as data in ``famous/packages``."""
    return Path(__file__).resolve().parent.parent / "packages"


def builtin_package_names() -> list[str]:
    root = builtin_packages_dir()
    return sorted(p.name for p in root.iterdir() if (p / "model.yaml").is_file())


def engine_names(directory: Path) -> list[str]:
    return sorted(p.parent.name for p in (Path(directory) / "engines").glob("*/engine.yaml"))


def user_packages_dir() -> Path:
    """Packages famous built or the user added: ``FAMOUS_HOME/packages/<name>``."""
    from famous.store.paths import famous_home

    return famous_home() / "packages"


def user_package_names() -> list[str]:
    root = user_packages_dir()
    if not root.is_dir():
        return []
    return sorted(p.name for p in root.iterdir() if (p / "model.yaml").is_file())


def package_dir(name: str) -> Path | None:
    """Where package ``name`` lives: a path, a built-in, or FAMOUS_HOME/packages (in that order).

    Built-in names come first so a user package can never shadow one famous ships.
    """
    path = Path(name).expanduser()
    if _is_package(path):
        return path
    if "/" in name or "\\" in name or name in (".", "..") or not name:
        return None
    for root in (builtin_packages_dir(), user_packages_dir()):
        if _is_package(root / name):
            return root / name
    return None


def _is_package(folder: Path) -> bool:
    """``folder`` holds a model.yaml; a name the system cannot look up (too long, a NUL)
    is no package."""
    try:
        return (folder / "model.yaml").is_file()
    except (OSError, ValueError):
        return False
