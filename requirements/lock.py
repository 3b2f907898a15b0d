"""Write ``requirements/dev.lock``: the exact version of every package ``famous[dev]`` pulls
in, read from the environment the suite has just passed in.

The lock is a pip constraints file: ``pip install -e ".[dev]" -c requirements/dev.lock``
installs those versions and nothing else, while famous's own ranges in pyproject.toml stay
open for users. To refresh it (after changing a dependency, or to take new releases):

    python -m venv /tmp/famous-lock && . /tmp/famous-lock/bin/activate
    pip install torch==2.13.0 && pip install -e ".[dev]"   # no -c: the newest releases
    python -m pytest                                       # must pass first
    python requirements/lock.py

Only the packages reachable from ``famous[dev]`` (their markers and extras evaluated here)
are written, so tools installed beside famous never enter the lock.
"""

from __future__ import annotations

import sys
from importlib import metadata
from pathlib import Path

from packaging.markers import default_environment
from packaging.requirements import Requirement
from packaging.utils import canonicalize_name

LOCK = Path(__file__).with_name("dev.lock")
HEADER = """\
# famous[dev]'s exact versions, as the suite last passed with them. Written by
# requirements/lock.py (its docstring says how to refresh it); used as a constraints file:
#   pip install torch==2.13.0 && pip install -e ".[dev]" -c requirements/dev.lock
"""


def _wanted(requirement: Requirement, extras: set[str]) -> bool:
    if requirement.marker is None:
        return True
    env = default_environment()
    return any(requirement.marker.evaluate({**env, "extra": extra}) for extra in (extras or {""}))


def closure(root: str = "famous", extras: frozenset[str] = frozenset({"dev"})) -> dict[str, str]:
    """name -> installed version for ``root[extras]`` and everything it requires."""
    found: dict[str, str] = {}
    todo: list[tuple[str, set[str]]] = [(root, set(extras))]
    seen: set[tuple[str, frozenset[str]]] = set()
    while todo:
        name, wanted_extras = todo.pop()
        key = (canonicalize_name(name), frozenset(wanted_extras))
        if key in seen:
            continue
        seen.add(key)
        try:
            dist = metadata.distribution(name)
        except metadata.PackageNotFoundError:
            sys.exit(f"{name} is required but not installed: install famous[dev] first")
        found[canonicalize_name(dist.metadata["Name"])] = dist.version
        for line in dist.requires or []:
            requirement = Requirement(line)
            if _wanted(requirement, wanted_extras):
                todo.append((requirement.name, set(requirement.extras)))
    found.pop(canonicalize_name(root), None)  # famous itself is the editable checkout
    return found


def main() -> None:
    pins = closure()
    # torch comes from the local CPU wheel (installed first); pin its public version
    if "torch" in pins:
        pins["torch"] = pins["torch"].split("+")[0]
    LOCK.write_text(HEADER + "".join(f"{n}=={v}\n" for n, v in sorted(pins.items())))
    print(f"wrote {len(pins)} pins to {LOCK}")


if __name__ == "__main__":
    main()
