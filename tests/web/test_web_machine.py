"""The machine page shows what ``famous show-machine --format json`` reports: read from a
small fake machine (``FAMOUS_HARDWARE_ROOT``) with an AMD GPU, its VRAM and the probe's
warning, so that the GPU rows are tested on a machine without a GPU."""

from __future__ import annotations

import json
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
import serving_harness as harness
from web_harness import WebGateway, environment, login

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "hardware"))
from hw_fakes import linux_root, pci

VRAM = 24 * 1024**3


@pytest.fixture(scope="module")
def gpu_machine(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[WebGateway, Path]]:
    root = linux_root(tmp_path_factory.mktemp("machine-root"))
    pci(root, "0000:03:00.0", 0x030000, 0x1002, 0x744C, mem_info_vram_total=f"{VRAM}\n")
    with environment({"FAMOUS_HARDWARE_ROOT": str(root)}):
        gw = harness.start_gateway(tmp_path_factory.mktemp("machine-home"))
    try:
        yield WebGateway(gw, None), root
    finally:
        harness.stop_gateway(gw)


def test_the_machine_page_shows_the_gpu_its_vram_and_the_warnings(page, gpu_machine) -> None:
    web, root = gpu_machine
    machine = harness.get_json(
        web.url + "/famous/api/machine", headers={"authorization": f"Bearer {web.token}"}
    )["machine"]
    env = {**harness.famous_env(web.gateway.home), "FAMOUS_HARDWARE_ROOT": str(root)}
    shown = harness.famous_cli(web.gateway.home, "show-machine", "--format", "json", env=env)
    cli = json.loads(shown.stdout)
    assert (machine["devices"], machine["warnings"], machine["cpus"]) == (
        cli["devices"],
        cli["warnings"],
        cli["cpus"],
    )
    login(page, web)
    page.click(".tab[data-view=machine]")
    accelerators = page.locator("#machine table", has_text="Accelerators")
    accelerators.wait_for()
    text = accelerators.locator("tbody tr").first.inner_text()
    assert "AMD (0x1002:0x744c)" in text and "24.0 GiB" in text and "discrete" in text, text
    warnings = page.locator("#machine .warnings li").all_inner_texts()
    assert warnings == machine["warnings"] and any("kfd" in w for w in warnings), warnings
    assert "Test CPU" in page.locator("#machine table", has_text="CPUs").inner_text()
