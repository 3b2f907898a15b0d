"""CPUs from /proc/cpuinfo: architecture, vendor, model, flags and core counts per kind of core.

Rules (what a person reading cpuinfo would conclude):

- Architecture is the kernel's (``proc/sys/kernel/arch``, else ``platform.machine()`` on the
  live host, else guessed from cpuinfo's keys), written with Debian's names.
- Flags: x86 ``flags``; arm ``Features``; RISC-V the extensions of ``isa``: one entry per
  single-letter extension (``g`` expanded to i, m, a, f, d, zicsr, zifencei) followed by the
  multi-letter ones (``zba``, ``zvfh``, ``sscofpmf`` …). A group's flags are those *every*
  core of the group has, so a flag shown on only some cores (``intel_ppin``) is not claimed.
- Cores are grouped by what identifies a kind of core: x86 vendor, model, family/model/
  stepping and cache size (Intel's hybrid parts show E-cores with a smaller cache); arm64
  implementer and part (big.LITTLE); RISC-V vendor/arch/impl ids. On a live hybrid Intel
  machine ``/sys/devices/cpu_core`` and ``cpu_atom`` also separate P from E cores.
- Physical cores: distinct (``physical id``, ``core id``) pairs where cpuinfo gives them
  (x86 with SMT); otherwise one per logical CPU.
"""

from __future__ import annotations

from collections.abc import Iterable

from famous.hardware.cpunames import arm_core_name, riscv_core_name
from famous.hardware.host import Host
from famous.hardware.report import CpuGroup

#: kernel machine names → Debian architecture names.
_DEBIAN_ARCH = {
    "x86_64": "amd64",
    "amd64": "amd64",
    "i386": "i386",
    "i486": "i386",
    "i586": "i386",
    "i686": "i386",
    "aarch64": "arm64",
    "arm64": "arm64",
    "armv6l": "armhf",
    "armv7l": "armhf",
    "armv8l": "armhf",
    "arm": "armhf",
    "riscv64": "riscv64",
    "ppc64le": "ppc64el",
    "ppc64": "ppc64",
    "s390x": "s390x",
    "loongarch64": "loong64",
    "mips64": "mips64el",
}

_CPUINFO = "/proc/cpuinfo"


def debian_arch(machine: str) -> str:
    """``x86_64`` → ``amd64``; an unknown name is kept as written (lower-cased)."""
    name = machine.strip().lower()
    return _DEBIAN_ARCH.get(name, name)


def parse_cpuinfo(text: str) -> tuple[list[dict[str, str]], dict[str, str]]:
    """Split cpuinfo into one dict per ``processor`` block plus machine-wide lines."""
    processors: list[dict[str, str]] = []
    machine: dict[str, str] = {}
    current: dict[str, str] | None = None
    for raw in text.splitlines():
        if not raw.strip():
            current = None
            continue
        key, sep, value = raw.partition(":")
        if not sep:
            continue
        key, value = key.strip(), value.strip()
        if key == "processor":
            current = {"processor": value}
            processors.append(current)
        elif current is not None:
            current[key] = value
        else:
            machine[key] = value
    return processors, machine


def _guess_arch(processors: list[dict[str, str]]) -> str | None:
    first = processors[0] if processors else {}
    if "CPU implementer" in first:
        return "arm64" if first.get("CPU architecture") == "8" else "armhf"
    isa = first.get("isa", "")
    if isa.startswith("rv64"):
        return "riscv64"
    if "flags" in first:
        return "amd64" if " lm " in f" {first['flags']} " else "i386"
    return None


def riscv_extensions(isa: str) -> list[str]:
    """``rv64imafdcv_zba_zbb`` → ['i','m','a','f','d','c','v','zba','zbb']."""
    parts = isa.strip().lower().split("_")
    head = parts[0]
    for prefix in ("rv64", "rv32", "rv128"):
        if head.startswith(prefix):
            head = head[len(prefix) :]
            break
    out: list[str] = []
    for letter in head:
        if letter == "g":
            out += ["i", "m", "a", "f", "d", "zicsr", "zifencei"]
        elif letter.isalpha():
            out.append(letter)
    out += [p for p in parts[1:] if p]
    seen: set[str] = set()
    return [x for x in out if not (x in seen or seen.add(x))]


def _int(value: str | None, base: int = 0) -> int | None:
    if value is None:
        return None
    try:
        return int(value, base)
    except ValueError:
        return None


def _flags_of(proc: dict[str, str], arch: str) -> list[str]:
    if arch == "riscv64" and "isa" in proc:
        return riscv_extensions(proc["isa"])
    return (proc.get("flags") or proc.get("Features") or "").split()


def _common_flags(procs: list[dict[str, str]], arch: str) -> list[str]:
    """Flags every core of the group has, in the order the first core lists them."""
    first = _flags_of(procs[0], arch)
    common = set(first)
    for proc in procs[1:]:
        common &= set(_flags_of(proc, arch))
    return [f for f in first if f in common]


def _group_key(proc: dict[str, str], core_type: str | None) -> tuple[str | None, ...]:
    keys = (
        "vendor_id",
        "model name",
        "cpu family",
        "model",
        "stepping",
        "cache size",
        "CPU implementer",
        "CPU part",
        "mvendorid",
        "marchid",
        "mimpid",
        "uarch",
        "cpu",
    )
    return (*(proc.get(k) for k in keys), core_type)


def _physical_cores(procs: list[dict[str, str]]) -> int:
    pairs = {(p.get("physical id"), p.get("core id")) for p in procs}
    if all(p.get("core id") is not None for p in procs):
        return len(pairs)
    return len(procs)


def _cpulist(text: str | None) -> set[int]:
    """'0-11,16' → {0..11, 16}."""
    out: set[int] = set()
    for part in (text or "").strip().split(","):
        lo, _, hi = part.partition("-")
        if lo.strip().isdigit():
            start = int(lo)
            end = int(hi) if hi.strip().isdigit() else start
            out.update(range(start, end + 1))
    return out


def _check_count(host: Host, listed: int, warnings: list[str]) -> None:
    """Warn when cpuinfo lists fewer processors than the kernel says are online/present.

    A truncated capture (or a cpuinfo cut short) would otherwise size engines for 1 of 8 CPUs.
    """
    # cpuinfo lists online CPUs only: compare with 'online', 'present' only without it.
    for name in ("online", "present"):
        cpus = _cpulist(host.read_text(f"/sys/devices/system/cpu/{name}"))
        if not cpus:
            continue
        if len(cpus) > listed:
            warnings.append(
                f"{_CPUINFO} lists {listed} processor(s) but /sys/devices/system/cpu/{name} "
                f"says {len(cpus)}: cpuinfo looks truncated, core counts may be low"
            )
        return


def _core_types(host: Host) -> dict[int, str]:
    """Hybrid Intel: which logical CPUs are P ('performance') or E ('efficient') cores."""
    perf = _cpulist(host.read_text("/sys/devices/cpu_core/cpus"))
    eff = _cpulist(host.read_text("/sys/devices/cpu_atom/cpus"))
    if not perf or not eff:
        return {}
    return {**{c: "performance" for c in perf}, **{c: "efficient" for c in eff}}


def _group(procs: list[dict[str, str]], arch: str, core_type: str | None) -> CpuGroup:
    first = procs[0]
    implementer = _int(first.get("CPU implementer"))
    part = _int(first.get("CPU part"))
    vendor = first.get("vendor_id") or first.get("mvendorid")
    model = first.get("model name") or first.get("cpu")
    if implementer is not None:
        model = arm_core_name(implementer, part) or model
    if model is None and "mvendorid" in first:
        model = riscv_core_name(_int(first.get("mvendorid")), _int(first.get("marchid")))
        model = model or first.get("uarch")
    return CpuGroup(
        architecture=arch,
        manufacturer_id=vendor,
        model_name=model,
        flags=_common_flags(procs, arch),
        implementer_id=implementer,
        part_number=part,
        physical_cores=_physical_cores(procs),
        logical_cores=len(procs),
        core_type=core_type,
    )


def detect_cpus(host: Host, warnings: list[str]) -> tuple[str, list[CpuGroup]]:
    """The Debian architecture and one ``CpuGroup`` per kind of core."""
    kernel = host.kernel_arch()
    text = host.read_text(_CPUINFO)
    processors, _machine = parse_cpuinfo(text or "")
    if text is None:
        warnings.append(f"cannot read {_CPUINFO}: CPU model, flags and core counts unknown")
    elif not processors:
        warnings.append(f"{_CPUINFO} lists no processors: CPU details unknown")
    arch = debian_arch(kernel) if kernel else _guess_arch(processors)
    if arch is None:
        warnings.append("cannot tell the CPU architecture (no kernel arch, cpuinfo unclear)")
        arch = "unknown"
    if not processors:
        return arch, []
    _check_count(host, len(processors), warnings)
    types = _core_types(host)
    groups: dict[tuple[str | None, ...], list[dict[str, str]]] = {}
    kinds: dict[tuple[str | None, ...], str | None] = {}
    threads = _threads_per_core(processors)
    for index, proc in enumerate(processors):
        number = _int(proc.get("processor"), 10)
        core_type = types.get(number if number is not None else index)
        smt: str | None = None
        if not types and proc.get("vendor_id") == "GenuineIntel":
            smt = "smt" if threads[_core_of(proc)] > 1 else "single"
        key = (*_group_key(proc, core_type), smt)
        groups.setdefault(key, []).append(proc)
        kinds[key] = core_type
    if not types:
        kinds = _hybrid_intel_types(groups) or kinds
    return arch, [_group(procs, arch, kinds[key]) for key, procs in groups.items()]


def _core_of(proc: dict[str, str]) -> tuple[str | None, str | None]:
    return proc.get("physical id"), proc.get("core id")


def _threads_per_core(processors: list[dict[str, str]]) -> dict[tuple[str | None, str | None], int]:
    counts: dict[tuple[str | None, str | None], int] = {}
    for proc in processors:
        counts[_core_of(proc)] = counts.get(_core_of(proc), 0) + 1
    return counts


def _hybrid_intel_types(
    groups: dict[tuple[str | None, ...], list[dict[str, str]]],
) -> dict[tuple[str | None, ...], str | None]:
    """Label P and E cores of a hybrid Intel CPU when only cpuinfo is available.

    Hybrid parts show one model name for all cores, but P-cores have Hyper-Threading and
    E-cores do not, and low-power E-cores report a smaller cache. So among groups of the same
    model: P = the groups with two threads per core (or, when no core has two, the group with
    the largest cache); every other group is E. A model with a single group is left unlabelled.
    """
    by_model: dict[str | None, list[tuple[str | None, ...]]] = {}
    for key, procs in groups.items():
        if procs[0].get("vendor_id") == "GenuineIntel":
            by_model.setdefault(procs[0].get("model name"), []).append(key)
    labels: dict[tuple[str | None, ...], str | None] = {key: None for key in groups}
    for keys in by_model.values():
        if len(keys) < 2:
            continue
        smt = [k for k in keys if k[-1] == "smt"]
        largest_cache = max(keys, key=lambda k: _cache_kb(groups[k][0]))
        perf = set(smt) if smt else {largest_cache}
        for key in keys:
            labels[key] = "performance" if key in perf else "efficient"
    return labels if any(labels.values()) else {}


def _cache_kb(proc: dict[str, str]) -> int:
    fields = proc.get("cache size", "0").split()
    return int(fields[0]) if fields and fields[0].isdigit() else 0


def notable_flags(group: CpuGroup) -> list[str]:
    """The flags engines usually ask for, for the table view."""
    wanted: Iterable[str] = {
        "amd64": ("avx", "avx2", "fma", "f16c", "avx512f", "avx512_vnni", "avx_vnni", "amx_tile"),
        "arm64": ("asimd", "asimddp", "i8mm", "bf16", "sve", "sve2", "sme"),
        "riscv64": ("v", "zfh", "zvfh", "zba", "zbb"),
    }.get(group.architecture, ())
    have = set(group.flags)
    return [f for f in wanted if f in have]
