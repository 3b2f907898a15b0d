"""The seam between the detector and a machine: the real ``/`` or a captured fake root.

Every probe reads files, lists directories, reads symlinks and runs commands only through a
``Host``, so the same code replays a capture (``../shared/machines/*/machine-root``) and
reads the live machine. In a fake root, commands are answered from ``run/``:

- ``nvidia-smi --id=SLOT --query-gpu=FIELD --format=csv,noheader`` → ``run/nvidia-smi/SLOT/FIELD``
- ``clinfo --json`` → ``run/clinfo.json``
- ``sysctl NAME…`` → the matching ``name: value`` lines of ``run/sysctl`` (``sysctl -a``)
- ``vm_stat`` → ``run/vm_stat`` (macOS captures)

A tool whose ``run/`` entry is absent counts as not installed, exactly like a missing
binary on a real host. Disk usage comes from ``run/disk-stats.json`` in a fake root.

A fake root is a jail (``FakeHost``): its symlinks resolve inside it, only regular files
are read, each at most ``MAX_READ`` bytes, and a missing root is the user's error.
"""

from __future__ import annotations

import json
import os
import platform
import shutil
import stat
from abc import ABC, abstractmethod
from dataclasses import dataclass
from pathlib import Path, PurePosixPath
from typing import Literal

from famous.errors import FamousError, InvalidInput
from famous.hardware import ENV_ROOT

DEFAULT_TIMEOUT = 5.0
#: No probe file is anywhere near this; a bigger one (or ``/dev/zero``) is refused.
MAX_READ = 4 * 1024**2
_MAX_HOPS = 40  # symlinks followed in one path before it counts as a loop (Linux's limit)

CommandStatus = Literal["ok", "missing", "timeout", "failed"]


class ProbeError(FamousError):
    """A probe could not read what it needed; the detector turns it into a warning."""


@dataclass(frozen=True)
class CommandResult:
    """What running a command gave: ``missing`` is a tool that is not installed (not an error)."""

    status: CommandStatus
    stdout: str = ""
    stderr: str = ""
    returncode: int | None = None

    @property
    def ok(self) -> bool:
        return self.status == "ok"

    def describe(self) -> str:
        """A short phrase for a warning: 'timed out', 'exited with 6: No devices were found'."""
        if self.status == "timeout":
            return "timed out"
        if self.status == "missing":
            return "is not installed"
        detail = (self.stderr or self.stdout).strip().splitlines()
        tail = f": {detail[0][:160]}" if detail else ""
        return f"exited with {self.returncode}{tail}"


@dataclass(frozen=True)
class DiskUsage:
    path: str
    total_bytes: int
    available_bytes: int


class Host(ABC):
    """Read-only access to one machine. Paths are absolute POSIX paths as on the machine."""

    #: ``platform.system()`` of the machine: "Linux" or "Darwin".
    system: str
    #: True for the live machine (probes may import libraries such as pynvml).
    is_real: bool

    @staticmethod
    def real() -> Host:
        return RealHost()

    @staticmethod
    def fake(root: str | os.PathLike[str], system: str | None = None) -> Host:
        return FakeHost(root, system=system)

    @staticmethod
    def from_env(root: str | os.PathLike[str] | None = None) -> Host:
        """``root`` if given, else ``$FAMOUS_HARDWARE_ROOT``, else the real machine."""
        chosen = root if root is not None else os.environ.get(ENV_ROOT) or None
        return FakeHost(chosen) if chosen is not None else RealHost()

    def refused(self) -> list[str]:
        """Files this host would not read (outside the root, FIFOs, loops), for warnings."""
        return []

    @property
    @abstractmethod
    def label(self) -> str:
        """Where this host reads from, for people: '/' or the fake root's path."""

    @abstractmethod
    def read_text(self, path: str) -> str | None:
        """The file's text, or None when it is missing or unreadable."""

    @abstractmethod
    def list_dir(self, path: str) -> list[str]:
        """Sorted entry names; empty when the directory is missing."""

    @abstractmethod
    def read_link(self, path: str) -> str | None:
        """A symlink's target (captures may store it as a file holding the target)."""

    @abstractmethod
    def exists(self, path: str) -> bool: ...

    @abstractmethod
    def run(self, argv: list[str], timeout: float = DEFAULT_TIMEOUT) -> CommandResult: ...

    @abstractmethod
    def kernel_arch(self) -> str | None:
        """The kernel's machine name (x86_64, aarch64, …) or None when unknown."""

    @abstractmethod
    def disk_usage(self, path: Path) -> DiskUsage | None:
        """Total and available bytes of the disk holding ``path`` (raises ProbeError)."""


class _NotRegular(OSError):
    """A FIFO, device or socket: reading it could block or never end."""


class _TooLarge(OSError):
    """More than ``MAX_READ`` bytes."""


def read_bounded(path: str | os.PathLike[str]) -> str:
    """A regular file's text, at most ``MAX_READ`` bytes, opened without blocking.

    The type is checked before opening (opening some devices does something, a watchdog
    starts), then again on the descriptor, opened ``O_NONBLOCK`` so that a FIFO swapped in
    between cannot block, before anything is read.
    """
    if not stat.S_ISREG(os.stat(path).st_mode):
        raise _NotRegular(str(path))
    fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK | getattr(os, "O_CLOEXEC", 0))
    try:
        if not stat.S_ISREG(os.fstat(fd).st_mode):
            raise _NotRegular(str(path))
        chunks: list[bytes] = []
        size = 0
        while chunk := os.read(fd, 65536):
            size += len(chunk)
            if size > MAX_READ:
                raise _TooLarge(str(path))
            chunks.append(chunk)
    finally:
        os.close(fd)
    return b"".join(chunks).decode("utf-8", errors="replace")


class RealHost(Host):
    """The live machine."""

    is_real = True

    def __init__(self) -> None:
        self.system = platform.system()

    @property
    def label(self) -> str:
        return "/"

    def read_text(self, path: str) -> str | None:
        try:
            return read_bounded(path)
        except OSError:
            return None

    def list_dir(self, path: str) -> list[str]:
        try:
            return sorted(os.listdir(path))
        except OSError:
            return []

    def read_link(self, path: str) -> str | None:
        try:
            return os.readlink(path)
        except OSError:
            return None

    def exists(self, path: str) -> bool:
        return os.path.exists(path)

    def run(self, argv: list[str], timeout: float = DEFAULT_TIMEOUT) -> CommandResult:
        exe = shutil.which(argv[0])
        if exe is None:
            return CommandResult("missing")
        import subprocess  # only paid for when a probe actually runs a tool

        try:
            done = subprocess.run(
                [exe, *argv[1:]],
                capture_output=True,
                text=True,
                errors="replace",
                timeout=timeout,
                check=False,
                stdin=subprocess.DEVNULL,
            )
        except subprocess.TimeoutExpired:
            return CommandResult("timeout")
        except OSError as exc:
            return CommandResult("failed", stderr=str(exc))
        status: CommandStatus = "ok" if done.returncode == 0 else "failed"
        return CommandResult(status, done.stdout, done.stderr, done.returncode)

    def kernel_arch(self) -> str | None:
        text = self.read_text("/proc/sys/kernel/arch")
        if text and text.strip():
            return text.strip()
        return platform.machine() or None

    def disk_usage(self, path: Path) -> DiskUsage | None:
        # Never create famous's home just to measure it: climb to the nearest existing parent.
        probe = path
        while not probe.exists() and probe != probe.parent:
            probe = probe.parent
        try:
            usage = shutil.disk_usage(probe)
        except OSError as exc:
            raise ProbeError(f"cannot measure the disk holding {path}: {exc}") from exc
        return DiskUsage(str(path), usage.total, usage.free)


class MissingRoot(InvalidInput):
    """``--root`` names no directory: the user's input is wrong, not the machine."""


class FakeHost(Host):
    """A captured machine laid out under ``root`` like ``machine-root/``, read as a jail.

    Every path is resolved inside the root, symlink by symlink, as ``chroot`` would: an
    absolute target is taken relative to the root and ``..`` stops at it, so nothing on the
    host is ever read. Only regular files are read (a FIFO or device is refused before it is
    opened, so nothing blocks) and at most ``MAX_READ`` bytes of each. What is refused is
    noted in ``refusals`` so the detector can warn about it.
    """

    is_real = False

    def __init__(self, root: str | os.PathLike[str], system: str | None = None) -> None:
        self.root = Path(root)
        if not self.root.is_dir():
            what = "is not a directory" if self.root.exists() else "does not exist"
            raise MissingRoot(
                f"hardware root {self.root} {what}",
                "pass --root (or FAMOUS_HARDWARE_ROOT) a captured machine's directory",
            )
        self.refusals: list[str] = []
        if system is None:
            darwin = not self.exists("/proc/cpuinfo") and self._kind("/run/sysctl") == "file"
            system = "Darwin" if darwin else "Linux"
        self.system = system

    @property
    def label(self) -> str:
        return str(self.root)

    def refused(self) -> list[str]:
        return list(self.refusals)

    def _refuse(self, path: str, why: str) -> None:
        note = f"{self.root}: {path} {why}, not read"
        if note not in self.refusals:
            self.refusals.append(note)

    def _resolve(self, path: str, follow_last: bool = True) -> Path | None:
        """``path`` inside the root, its symlinks followed inside it; None for a loop."""
        pending = [p for p in PurePosixPath(path).parts if p not in ("/", ".")]
        pending.reverse()
        done: list[str] = []
        hops = 0
        while pending:
            part = pending.pop()
            if part == "..":
                if done:
                    done.pop()
                continue
            here = self.root.joinpath(*done, part)
            if not (pending or follow_last) or not here.is_symlink():
                done.append(part)
                continue
            hops += 1
            if hops > _MAX_HOPS:
                self._refuse(path, "is a symlink loop (absolute links resolve inside the root)")
                return None
            target = PurePosixPath(os.readlink(here))
            if target.is_absolute():
                done = []
            pending.extend(reversed([p for p in target.parts if p not in ("/", ".")]))
        return self.root.joinpath(*done)

    def _kind(self, path: str) -> str | None:
        """'file', 'dir', 'other' (FIFO, device, socket) or None when absent."""
        real = self._resolve(path)
        try:
            mode = os.stat(real).st_mode if real is not None else None
        except OSError:
            return None
        if mode is None:
            return None
        if stat.S_ISREG(mode):
            return "file"
        return "dir" if stat.S_ISDIR(mode) else "other"

    def read_text(self, path: str) -> str | None:
        real = self._resolve(path)
        if real is None:
            return None
        try:
            text = read_bounded(real)
        except _NotRegular:
            self._refuse(path, "is not a regular file (FIFO, device or socket)")
            return None
        except _TooLarge:
            self._refuse(path, f"is larger than {MAX_READ // 1024**2} MiB")
            return None
        except OSError:
            return None
        return text

    def list_dir(self, path: str) -> list[str]:
        real = self._resolve(path)
        if real is None:
            return []
        try:
            return sorted(os.listdir(real))
        except OSError:
            return []

    def read_link(self, path: str) -> str | None:
        real = self._resolve(path, follow_last=False)
        if real is None:
            return None
        if real.is_symlink():
            return os.readlink(real)
        if self._kind(path) == "file":
            # Captures store symlinks as small files holding the link's target.
            text = self.read_text(path)
            return text.strip() if text and text.strip() else None
        return None

    def exists(self, path: str) -> bool:
        return self._kind(path) is not None

    def kernel_arch(self) -> str | None:
        text = self.read_text("/proc/sys/kernel/arch")
        if text and text.strip():
            return text.strip()
        if self.system == "Darwin":
            result = self.run(["sysctl", "hw.machine"])
            _, _, value = result.stdout.partition(":")
            if result.ok and value.strip():
                return value.strip()
        return None

    def run(self, argv: list[str], timeout: float = DEFAULT_TIMEOUT) -> CommandResult:
        tool = os.path.basename(argv[0])
        args = argv[1:]
        if tool == "nvidia-smi":
            return self._answer_nvidia_smi(args)
        if tool == "clinfo":
            return self._answer_file("/run/clinfo.json")
        if tool == "sysctl":
            return self._answer_sysctl([a for a in args if not a.startswith("-")])
        if tool == "vm_stat":
            return self._answer_file("/run/vm_stat")
        return CommandResult("missing")

    def _answer_file(self, path: str) -> CommandResult:
        text = self.read_text(path)
        if text is None:
            return CommandResult("missing")
        return CommandResult("ok", stdout=text, returncode=0)

    def _answer_sysctl(self, names: list[str]) -> CommandResult:
        """Like ``sysctl NAME…``: each name or subtree's ``name: value`` lines; 1 if unknown."""
        text = self.read_text("/run/sysctl")
        if text is None:
            return CommandResult("missing")
        lines = text.splitlines()
        out: list[str] = []
        unknown: list[str] = []
        for name in names:
            found = [ln for ln in lines if ln.split(":", 1)[0].strip() == name]
            found = found or [ln for ln in lines if ln.startswith(name + ".")]
            out += found
            if not found:
                unknown.append(f"sysctl: unknown oid '{name}'")
        stdout = "".join(ln + "\n" for ln in out)
        if unknown:
            return CommandResult("failed", stdout, "\n".join(unknown), returncode=1)
        return CommandResult("ok", stdout, returncode=0)

    def _answer_nvidia_smi(self, args: list[str]) -> CommandResult:
        if self._kind("/run/nvidia-smi") != "dir":
            return CommandResult("missing")
        slot = field = None
        for i, arg in enumerate(args):
            value = args[i + 1] if i + 1 < len(args) else None
            if arg.startswith("--id="):
                slot = arg.split("=", 1)[1]
            elif arg in ("--id", "-i"):
                slot = value
            elif arg.startswith("--query-gpu="):
                field = arg.split("=", 1)[1]
        if not slot or not field:
            return CommandResult("failed", stderr="unsupported nvidia-smi call", returncode=2)
        text = self.read_text(f"/run/nvidia-smi/{slot}/{field}")
        if text is None:
            return CommandResult("failed", stdout="No devices were found\n", returncode=6)
        return CommandResult("ok", stdout=text, returncode=0)

    def disk_usage(self, path: Path) -> DiskUsage | None:
        text = self.read_text("/run/disk-stats.json")
        if text is None:
            return None
        try:
            data = json.loads(text)
        except ValueError as exc:
            raise ProbeError(f"run/disk-stats.json is not valid JSON: {exc}") from exc
        return _pick_disk(data, path)


def _pick_disk(data: object, path: Path) -> DiskUsage:
    """Choose the captured mount that would hold ``path``: the longest matching mount point."""

    def sizes(entry: object, where: str) -> DiskUsage:
        if not isinstance(entry, dict):
            raise ProbeError(f"run/disk-stats.json: entry {where!r} is not an object")
        total = entry.get("total")
        avail = entry.get("avail", entry.get("available"))
        if not isinstance(total, int) or not isinstance(avail, int):
            raise ProbeError(f"run/disk-stats.json: entry {where!r} lacks integer total/avail")
        return DiskUsage(where, total, avail)

    if not isinstance(data, dict) or not data:
        raise ProbeError("run/disk-stats.json: expected an object of mount points")
    if "total" in data:
        return sizes(data, "/")
    target = path.as_posix()
    matches = [m for m in data if target == m or target.startswith(m.rstrip("/") + "/")]
    chosen = max(matches, key=len) if matches else next(iter(data))
    return sizes(data[chosen], chosen)
