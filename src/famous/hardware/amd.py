"""AMD GPUs: gfx target and APU-ness from the kfd topology, VRAM from amdgpu's sysfs.

Each GPU node under ``/sys/class/kfd/kfd/topology/nodes/*/properties`` has a non-zero
``gfx_target_version`` (``major*10000 + minor*100 + stepping``, minor and stepping printed
in hex: 90010 → gfx90a, 110502 → gfx1152). The node is matched to its PCI device through the
``drm_render_minor`` symlink ``/sys/class/drm/renderD<minor>`` (…/<slot>/drm/renderD<minor>),
else through ``domain`` and ``location_id`` (bus << 8 | device << 3 | function).

VRAM: ``mem_info_vram_total`` of the PCI device (an APU's BIOS carve-out), else the node's
``local_mem_size``. A node is an APU (integrated) when its ``local_mem_size`` is 0 or it owns
CPU cores as well as SIMDs (older kernels).
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
        local = props.get("local_mem_size")
        apu = local == 0 or (props.get("cpu_cores_count", 0) > 0 and props.get("simd_count", 0) > 0)
        dev.integrated = apu
        dev.gpu.unified_memory = apu
        if local:
            dev.gpu.vram_bytes = local
    for slot, dev in gpus.items():
        assert dev.gpu is not None
        vram = host.read_text(f"{PCI_DEVICES}/{slot}/mem_info_vram_total")
        if vram is not None and vram.strip().isdigit():
            dev.gpu.vram_bytes = int(vram.strip())
        if slot not in seen:
            warnings.append(
                f"AMD GPU {slot}: no kfd topology (amdgpu/ROCm not loaded?), gfx target unknown"
            )
