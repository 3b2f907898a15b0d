// This machine: CPUs, memory, disk, GPUs / NPUs with VRAM and drivers, and warnings.

import { api } from "./api.js";
import { clear, definitionList, el, formatBytes, table } from "./util.js";

// PCI vendor ids the report leaves unnamed (the same short table `famous show-machine` uses)
const VENDORS = {
  0x10de: "NVIDIA",
  0x1002: "AMD",
  0x1022: "AMD",
  0x8086: "Intel",
  0x106b: "Apple",
  0x1a03: "ASPEED",
  0x102b: "Matrox",
  0x14e4: "Broadcom",
  0x1de4: "Raspberry Pi",
};

const hex = (n, width) => (n === null || n === undefined ? "–" : `0x${Number(n).toString(16).padStart(width, "0")}`);

function accelerators(devices) {
  const shown = devices.filter((d) => d.kind === "gpu" || d.kind === "npu");
  if (!shown.length) return el("p", { class: "empty", text: "No GPU or NPU found." });
  const rows = shown.map((d) => [
    d.kind.toUpperCase(),
    `${[d.vendor_name || VENDORS[d.vendor_id], d.device_name].filter(Boolean).join(" ")} (${hex(d.vendor_id, 4)}:${hex(d.device_id, 4)})`.trim(),
    d.gpu ? formatBytes(d.gpu.vram_bytes) : "–",
    (d.gpu && d.gpu.driver) || "–",
    d.gpu ? [d.gpu.compute_capability && `cc ${d.gpu.compute_capability}`, d.gpu.microarchitecture].filter(Boolean).join(" ") || "–" : "–",
    d.kind !== "gpu" ? "–" : d.integrated ? "integrated (shared)" : d.gpu && d.gpu.unified_memory ? "unified memory" : "discrete",
    d.slot,
  ]);
  return table(["Kind", "Device", "VRAM", "Driver", "Architecture", "Memory", "Slot"], rows, "Accelerators");
}

export function init() {}

export async function enter() {
  const { machine } = await api("/famous/api/machine");
  const box = clear(document.getElementById("machine"));
  const cpus = machine.cpus.map((c) => [
    c.model_name || c.manufacturer_id || "CPU",
    c.architecture,
    String(c.physical_cores),
    String(c.logical_cores),
    c.core_type || "–",
  ]);
  const m = machine.memory;
  box.append(
    el("h2", { text: "Processors" }),
    table(["Model", "Architecture", "Cores", "Threads", "Core type"], cpus, "CPUs"),
    el("h2", { text: "Memory and disk" }),
    definitionList([
      ["Memory", `${formatBytes(m.available_bytes)} free of ${formatBytes(m.total_bytes)}`],
      ["Swap", `${formatBytes(m.swap_free_bytes)} free of ${formatBytes(m.swap_total_bytes)}`],
      ["Disk", machine.disk ? `${formatBytes(machine.disk.available_bytes)} free of ${formatBytes(machine.disk.total_bytes)} (${machine.disk.path})` : "–"],
    ]),
    el("h2", { text: "GPUs and NPUs" }),
    accelerators(machine.devices || []),
    el("h2", { text: "Warnings" }),
    machine.warnings && machine.warnings.length
      ? el("ul", { class: "warnings" }, machine.warnings.map((w) => el("li", { text: w })))
      : el("p", { class: "empty", text: "None." }),
  );
}
