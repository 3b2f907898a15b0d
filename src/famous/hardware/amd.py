"""AMD GPUs: gfx target and APU-ness from the kfd topology, VRAM from amdgpu's sysfs.

Each GPU node under ``/sys/class/kfd/kfd/topology/nodes/*/properties`` has a non-zero
``gfx_target_version`` (``major*10000 + minor*100 + stepping``, minor and stepping printed
in hex: 90010 → gfx90a, 110502 → gfx1152). The node is matched to its PCI device through the
``drm_render_minor`` symlink ``/sys/class/drm/renderD<minor>`` (…/<slot>/drm/renderD<minor>),
else through ``domain`` and ``location_id`` (bus << 8 | device << 3 | function).

VRAM: ``mem_info_vram_total`` of the PCI device (an APU's BIOS carve-out), else the node's
``local_mem_size``, else its frame-buffer memory banks (``mem_banks/*/properties``, heap
types 1 and 2: public and private frame buffer).

A node is an APU (integrated) when it owns CPU cores as well as SIMDs (older kernels), or
when its ``local_mem_size`` is 0 and its frame-buffer banks do not look like VRAM: a discrete
card with ``local_mem_size 0`` (seen on RDNA2 laptop GPUs) lists its VRAM in a bank whose
size matches ``mem_info_vram_total``, while an APU's bank is the GTT window over system RAM
(half of it by default), far larger than its carve-out.
"""

from __future__ import annotations

from famous.hardware.host import Host
from famous.hardware.pci import PCI_DEVICES, VENDOR_AMD
from famous.hardware.report import Device

KFD_NODES = "/sys/class/kfd/kfd/topology/nodes"


def gfx_target(version: int) -> str:
    """110502 → 'gfx1152', 90010 → 'gfx90a', 100300 → 'gfx1030'."""
    major, rest = divmod(version, 10000)
    minor, stepping = divmod(rest, 100)
    return f"gfx{major}{minor:x}{stepping:x}"


def parse_properties(text: str) -> dict[str, int]:
    values: dict[str, int] = {}
    for line in text.splitlines():
        fields = line.split()
        if len(fields) == 2:
            try:
                values[fields[0]] = int(fields[1])
            except ValueError:
                continue
    return values


def location_slot(domain: int, location_id: int) -> str:
    bus, devfn = divmod(location_id, 256)
    return f"{domain:04x}:{bus:02x}:{devfn >> 3:02x}.{devfn & 7:x}"


def _render_slot(host: Host, minor: int) -> str | None:
    target = host.read_link(f"/sys/class/drm/renderD{minor}")
    if not target:
        return None
    parts = target.rstrip("/").split("/")
    if "drm" in parts:
        index = parts.index("drm")
        return parts[index - 1] if index > 0 else None
    return None


_FRAME_BUFFER_HEAPS = (1, 2)  # HSA_MEM_HEAP_TYPE_FB_PUBLIC, FB_PRIVATE
_SAME_SIZE = 0.05  # a bank within 5 % of mem_info_vram_total is that VRAM


def frame_buffer_bytes(host: Host, node: str) -> int:
    """The node's frame-buffer memory: the sum of its FB heaps' ``size_in_bytes`` (0 if none)."""
    total = 0
    for bank in host.list_dir(f"{KFD_NODES}/{node}/mem_banks"):
        text = host.read_text(f"{KFD_NODES}/{node}/mem_banks/{bank}/properties")
        props = parse_properties(text or "")
        if props.get("heap_type") in _FRAME_BUFFER_HEAPS:
            total += max(props.get("size_in_bytes", 0), 0)
    return total


def _is_apu(props: dict[str, int], banks: int, vram_total: int | None) -> bool:
    if props.get("cpu_cores_count", 0) > 0 and props.get("simd_count", 0) > 0:
        return True
    local = props.get("local_mem_size")
    if local or (local is None and not banks):
        return False  # VRAM of its own, or a layout without the figure: the PCI rule's call
    if not banks:
        return True
    if vram_total is None:
        return False  # a frame buffer of its own and no carve-out figure: a card's VRAM
    return abs(banks - vram_total) > _SAME_SIZE * max(banks, vram_total)


def _vram_total(host: Host, slot: str) -> int | None:
    text = host.read_text(f"{PCI_DEVICES}/{slot}/mem_info_vram_total")
    return int(text.strip()) if text is not None and text.strip().isdigit() else None


def probe_amd(host: Host, devices: list[Device], warnings: list[str]) -> None:
    """Fill gfx target, VRAM and APU-ness of every AMD GPU."""
    gpus = {d.slot: d for d in devices if d.kind == "gpu" and d.vendor_id == VENDOR_AMD}
    if not gpus:
        return
    seen: set[str] = set()
    for node in host.list_dir(KFD_NODES):
        text = host.read_text(f"{KFD_NODES}/{node}/properties")
        if text is None:
            continue
        props = parse_properties(text)
        version = props.get("gfx_target_version", 0)
        if not version:
            continue  # a CPU node
        slot = None
        if props.get("drm_render_minor"):
            slot = _render_slot(host, props["drm_render_minor"])
        if slot not in gpus and "location_id" in props:
            slot = location_slot(props.get("domain", 0), props["location_id"])
        dev = gpus.get(slot or "")
        if dev is None or dev.gpu is None:
            warnings.append(f"kfd node {node} ({gfx_target(version)}) matches no AMD PCI GPU")
            continue
        seen.add(dev.slot)
        dev.gpu.microarchitecture = gfx_target(version)
        banks = frame_buffer_bytes(host, node)
        vram_total = _vram_total(host, dev.slot)
        apu = _is_apu(props, banks, vram_total)
        dev.integrated = apu
        dev.gpu.unified_memory = apu
        own = None if apu else banks or None  # an APU's banks are a window onto system RAM
        dev.gpu.vram_bytes = vram_total or props.get("local_mem_size") or own
    for slot, dev in gpus.items():
        assert dev.gpu is not None
        if slot not in seen:
            dev.gpu.vram_bytes = _vram_total(host, slot)
            warnings.append(
                f"AMD GPU {slot}: no kfd topology (amdgpu/ROCm not loaded?), gfx target unknown"
            )
