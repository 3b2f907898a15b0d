"""A fake root is a jail: nothing outside it is read, nothing blocks, nothing grows unbounded."""

from __future__ import annotations

import os
import threading
from pathlib import Path

import pytest
from hw_fakes import linux_root, pci, write

from famous.errors import InvalidInput
from famous.hardware import Host, detect
from famous.hardware.host import MAX_READ, MissingRoot


def _detect_within(root: Path, seconds: float = 10.0):
    """detect() in a thread, failing the test (not hanging the suite) if it blocks."""
    out: list[object] = []
    worker = threading.Thread(target=lambda: out.append(detect(Host.fake(root))), daemon=True)
    worker.start()
    worker.join(seconds)
    assert not worker.is_alive(), "detect() blocked on the fake root"
    (report,) = out
    return report


def test_absolute_symlink_is_re_rooted_not_read_from_the_host(tmp_path: Path) -> None:
    root = linux_root(tmp_path / "root")
    (root / "proc/meminfo").unlink()
    (root / "proc/meminfo").symlink_to("/proc/meminfo")  # re-rooted: points at itself
    report = detect(Host.fake(root))
    assert report.memory.total_bytes == 0  # the host's RAM was not read
    assert any("/proc/meminfo is a symlink loop (absolute links" in w for w in report.warnings)


def test_absolute_symlink_to_a_file_inside_the_root_is_followed(tmp_path: Path) -> None:
    root = linux_root(tmp_path / "root")
    (root / "proc/meminfo").rename(root / "saved-meminfo")
    (root / "proc/meminfo").symlink_to("/saved-meminfo")
    assert detect(Host.fake(root)).memory.total_bytes == 8000000 * 1024


def test_relative_symlink_cannot_climb_out_of_the_root(tmp_path: Path) -> None:
    (tmp_path / "secret").write_text("MemTotal: 1 kB\n")
    root = linux_root(tmp_path / "root")
    (root / "proc/meminfo").unlink()
    (root / "proc/meminfo").symlink_to("../../../../../secret")
    host = Host.fake(root)
    assert host.read_text("/proc/meminfo") is None  # '..' stops at the root: /secret is absent
    write(root, "secret", "MemTotal: 2 kB\n")
    assert host.read_text("/proc/meminfo") == "MemTotal: 2 kB\n"


def test_fifo_as_cpuinfo_is_refused_without_blocking(tmp_path: Path) -> None:
    root = linux_root(tmp_path / "root")
    (root / "proc/cpuinfo").unlink()
    os.mkfifo(root / "proc/cpuinfo")
    report = _detect_within(root)
    assert report.cpus == []
    assert any("/proc/cpuinfo is not a regular file" in w for w in report.warnings)


def test_dev_zero_symlink_is_never_read(tmp_path: Path) -> None:
    root = linux_root(tmp_path / "root")
    (root / "proc/meminfo").unlink()
    (root / "proc/meminfo").symlink_to("/dev/zero")  # re-rooted: <root>/dev/zero is absent
    report = _detect_within(root)
    assert report.memory.total_bytes == 0
    assert any("cannot read /proc/meminfo" in w for w in report.warnings)


def test_host_dev_zero_through_the_real_host_is_refused() -> None:
    assert Host.real().read_text("/dev/zero") is None  # a device, refused before any read


def test_oversized_file_is_refused(tmp_path: Path) -> None:
    root = linux_root(tmp_path / "root")
    write(root, "proc/cpuinfo", "processor : 0\n" * (MAX_READ // 14 + 10))
    report = detect(Host.fake(root))
    assert report.cpus == []
    assert any("/proc/cpuinfo is larger than 4 MiB, not read" in w for w in report.warnings)


def test_symlink_loop_as_pci_devices_is_a_warning(tmp_path: Path) -> None:
    root = linux_root(tmp_path / "root")
    (root / "sys/bus/pci").mkdir(parents=True)
    (root / "sys/bus/pci/devices").symlink_to("devices")
    report = detect(Host.fake(root))
    assert report.devices == []
    assert any("/sys/bus/pci/devices is a symlink loop" in w for w in report.warnings)


def test_symlinked_pci_devices_like_real_sysfs_are_followed(tmp_path: Path) -> None:
    root = linux_root(tmp_path / "root")
    pci(root, "0000:01:00.0", 0x030000, 0x10DE, 0x2684)
    real = root / "sys/devices/pci0000:00"
    real.mkdir(parents=True)
    (root / "sys/bus/pci/devices/0000:01:00.0").rename(real / "0000:01:00.0")
    link = root / "sys/bus/pci/devices/0000:01:00.0"
    link.symlink_to("../../../devices/pci0000:00/0000:01:00.0")
    (gpu,) = detect(Host.fake(root)).gpus
    assert gpu.vendor_id == 0x10DE


def test_truncated_cpuinfo_warns(tmp_path: Path) -> None:
    root = linux_root(tmp_path / "root")
    write(root, "sys/devices/system/cpu/online", "0-7\n")
    report = detect(Host.fake(root))
    assert report.logical_cores == 2
    assert any(
        "lists 2 processor(s) but /sys/devices/system/cpu/online says 8" in w
        for w in report.warnings
    )


def test_complete_cpuinfo_does_not_warn(tmp_path: Path) -> None:
    root = linux_root(tmp_path / "root")
    write(root, "sys/devices/system/cpu/present", "0-1\n")
    assert detect(Host.fake(root)).warnings == []


def test_offline_cpus_are_not_a_truncated_cpuinfo(tmp_path: Path) -> None:
    root = linux_root(tmp_path / "root")
    write(root, "sys/devices/system/cpu/present", "0-7\n")
    write(root, "sys/devices/system/cpu/online", "0-1\n")  # cpuinfo lists online ones only
    assert detect(Host.fake(root)).warnings == []


def test_truncated_cpuinfo_warns_against_present_without_online(tmp_path: Path) -> None:
    root = linux_root(tmp_path / "root")
    write(root, "sys/devices/system/cpu/present", "0-3\n")
    warnings = detect(Host.fake(root)).warnings
    assert any("/sys/devices/system/cpu/present says 4" in w for w in warnings)


@pytest.mark.parametrize("make", ["missing", "file"])
def test_missing_root_is_bad_input_naming_it(tmp_path: Path, make: str) -> None:
    root = tmp_path / "capture"
    if make == "file":
        root.write_text("")
    with pytest.raises(MissingRoot) as info:
        Host.fake(root)
    assert isinstance(info.value, InvalidInput)
    assert str(root) in str(info.value)


def test_socket_as_meminfo_is_refused(tmp_path: Path) -> None:
    import socket

    root = linux_root(tmp_path / "r")
    (root / "proc/meminfo").unlink()
    with socket.socket(socket.AF_UNIX) as sock:
        sock.bind(str(root / "proc/meminfo"))
        report = _detect_within(root)
    assert report.memory.total_bytes == 0
    assert any("/proc/meminfo is not a regular file" in w for w in report.warnings)
