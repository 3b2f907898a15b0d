"""Names for CPU ids that /proc/cpuinfo prints only as numbers (arm64 MIDR, RISC-V ids).

Small on purpose: the cores famous's engines care about. An unknown id is simply unnamed.
"""

from __future__ import annotations

#: arm64 ``CPU implementer`` → vendor.
ARM_IMPLEMENTERS: dict[int, str] = {
    0x41: "Arm",
    0x42: "Broadcom",
    0x43: "Cavium",
    0x46: "Fujitsu",
    0x48: "HiSilicon",
    0x4E: "NVIDIA",
    0x50: "Applied Micro",
    0x51: "Qualcomm",
    0x61: "Apple",
    0x6D: "Microsoft",
    0xC0: "Ampere",
}

#: (implementer, ``CPU part``) → core name.
ARM_PARTS: dict[tuple[int, int], str] = {
    (0x41, 0xD03): "Cortex-A53",
    (0x41, 0xD04): "Cortex-A35",
    (0x41, 0xD05): "Cortex-A55",
    (0x41, 0xD07): "Cortex-A57",
    (0x41, 0xD08): "Cortex-A72",
    (0x41, 0xD09): "Cortex-A73",
    (0x41, 0xD0A): "Cortex-A75",
    (0x41, 0xD0B): "Cortex-A76",
    (0x41, 0xD0C): "Neoverse-N1",
    (0x41, 0xD0D): "Cortex-A77",
    (0x41, 0xD40): "Neoverse-V1",
    (0x41, 0xD41): "Cortex-A78",
    (0x41, 0xD44): "Cortex-X1",
    (0x41, 0xD46): "Cortex-A510",
    (0x41, 0xD47): "Cortex-A710",
    (0x41, 0xD48): "Cortex-X2",
    (0x41, 0xD49): "Neoverse-N2",
    (0x41, 0xD4D): "Cortex-A715",
    (0x41, 0xD4E): "Cortex-X3",
    (0x41, 0xD4F): "Neoverse-V2",
    (0x41, 0xD80): "Cortex-A520",
    (0x41, 0xD81): "Cortex-A720",
    (0x41, 0xD82): "Cortex-X4",
    (0x41, 0xD84): "Neoverse-V3",
    (0x41, 0xD8E): "Neoverse-N3",
    (0x43, 0x0AF): "ThunderX2",
    (0x46, 0x001): "A64FX",
    (0x48, 0xD01): "TaiShan v110",
    (0x50, 0x000): "X-Gene",
    (0x51, 0x001): "Oryon",
    # Ampere's own cores carry the product codes AC03 / AC04 / AC05 as part numbers.
    (0xC0, 0xAC3): "AmpereOne (AC03)",
    (0xC0, 0xAC4): "AmpereOne (AC04)",
    (0xC0, 0xAC5): "AmpereOne (AC05)",
}

#: RISC-V ``mvendorid`` → vendor.
RISCV_VENDORS: dict[int, str] = {
    0x489: "SiFive",
    0x5B7: "T-Head",
    0x710: "SpacemiT",
}

#: (mvendorid, marchid) → core name, when cpuinfo has no ``model name``.
RISCV_CORES: dict[tuple[int, int], str] = {
    (0x489, 0x8000000000000007): "SiFive U74",
    (0x489, 0x8000000000000008): "SiFive P550",
    (0x710, 0x8000000058000001): "SpacemiT X60",
}


def arm_core_name(implementer: int | None, part: int | None) -> str | None:
    if implementer is None or part is None:
        return None
    return ARM_PARTS.get((implementer, part))


def riscv_core_name(vendor: int | None, arch: int | None) -> str | None:
    if vendor is None or arch is None:
        return None
    return RISCV_CORES.get((vendor, arch))
