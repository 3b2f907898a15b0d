"""The selection and configuration commands, run as a user runs them."""

from __future__ import annotations

import importlib.util
import json
import subprocess
import sys
from pathlib import Path

import pytest
import yaml
from typer.testing import CliRunner

from famous.cli import exits
from famous.cli.main import app, command_modules

from .conftest import machine_root
from .test_manifests import GOOD_ENGINE, write_package

runner = CliRunner()
GPU_BOX = "i5-3570k+arc-a580+gtx1080ti"


def famous(*args: str) -> tuple[int, str, str]:
    result = runner.invoke(app, list(args))
    return result.exit_code, result.stdout, result.stderr


def test_every_command_module_registers() -> None:
    import importlib

    for name in command_modules():
        assert callable(importlib.import_module(name).register)


def test_models_lists_builtin_packages_in_every_format() -> None:
    code, out, _ = famous("models")
    assert code == 0 and "qwen2.5-0.5b-instruct" in out and "embedding" in out
    code, out, _ = famous("models", "--format", "json")
    names = [m["name"] for m in json.loads(out)]
    assert "all-minilm-l6-v2" in names
    code, out, _ = famous("models", "--format", "yaml")
    assert [m["name"] for m in yaml.safe_load(out)] == names


def test_show_model() -> None:
    code, out, _ = famous("show-model", "qwen2.5-0.5b-instruct")
    assert code == 0
    assert "Qwen/Qwen2.5-0.5B-Instruct-GGUF" in out and "q4_k_m" in out
    code, out, _ = famous("show-model", "qwen2.5-0.5b-instruct", "--format", "json")
    assert json.loads(out)["model"]["shape"]["kv-heads"] == 2


def test_engines_marks_the_chosen_one() -> None:
    code, out, _ = famous("engines", "qwen2.5-0.5b-instruct", "--root", str(machine_root(GPU_BOX)))
    assert code == 0
    lines = {
        line.split()[1] if line.startswith("*") else line.split()[0]: line
        for line in out.splitlines()[1:]
    }
    assert lines["cuda"].startswith("* cuda") and " yes " in lines["cuda"]
    assert " no " in lines["vllm-cuda"]
    code, out, _ = famous(
        "engines", "qwen2.5-0.5b-instruct", "--root", str(machine_root(GPU_BOX)), "-f", "json"
    )
    rows = json.loads(out)
    assert [r["engine"] for r in rows if r["selected"]] == ["cuda"]
    assert {r["verdict"] for r in rows} == {"yes", "no"}


def test_show_engine_explains_each_device() -> None:
    root = str(machine_root(GPU_BOX))
    code, out, _ = famous("show-engine", "llama-3.1-8b-instruct", "vllm-cuda", "--root", root)
    assert code == 0
    assert "compute capability 6.1 does not satisfy >=7.0" in out
    assert "KV cache" in out and "gpu-memory-utilization = 0.9  (engine)" in out
    code, out, _ = famous("show-engine", "llama-3.1-8b-instruct", "--root", root, "-f", "json")
    data = json.loads(out)
    assert data["manifest"]["name"] == "cuda" and data["evaluation"]["score"] == 120


def test_engines_on_a_machine_that_cannot_run_the_model_exits_3() -> None:
    code, out, _ = famous("engines", "qwen3-8b", "--root", str(machine_root("asus-ux301l")))
    assert code == exits.INCOMPATIBLE and "no engine can run here" in out


def test_unknown_model_and_engine_exit_4() -> None:
    code, _, err = famous("engines", "no-such-model")
    assert code == exits.NOT_FOUND and "famous models" in err
    code, _, err = famous(
        "show-engine", "qwen2.5-0.5b-instruct", "warp-drive", "--root", str(machine_root(GPU_BOX))
    )
    assert code == exits.NOT_FOUND and "its engines are" in err


def test_use_engine_persists_refuses_incompatible_and_auto_unpins(famous_home: Path) -> None:
    root = str(machine_root(GPU_BOX))
    code, _, err = famous("use-engine", "qwen2.5-0.5b-instruct", "vllm-cuda", "--root", root)
    assert code == exits.INCOMPATIBLE and "compute capability 6.1" in err and "--force" in err
    code, out, _ = famous("use-engine", "qwen2.5-0.5b-instruct", "cpu", "--root", root)
    assert code == 0 and "pinned" in out
    _, out, _ = famous("engines", "qwen2.5-0.5b-instruct", "--root", root, "-f", "json")
    assert [r["engine"] for r in json.loads(out) if r["selected"]] == ["cpu"]
    code, out, _ = famous(
        "use-engine", "qwen2.5-0.5b-instruct", "vllm-cuda", "--force", "--root", root
    )
    assert code == 0 and "forced" in out
    code, out, _ = famous("use-engine", "qwen2.5-0.5b-instruct", "--auto")
    assert code == 0 and "unpinned" in out
    _, out, _ = famous("engines", "qwen2.5-0.5b-instruct", "--root", root, "-f", "json")
    assert [r["engine"] for r in json.loads(out) if r["selected"]] == ["cuda"]
    code, _, _ = famous("use-engine", "qwen2.5-0.5b-instruct")
    assert code == exits.USAGE


def test_config_layers_package_engine_user_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("FAMOUS_HARDWARE_ROOT", str(machine_root("raspberry-pi-5")))
    _, out, _ = famous("get", "http.port", "-f", "json")
    assert json.loads(out) == {"key": "http.port", "value": 8324, "layer": "package"}
    _, out, _ = famous("get", "context-size", "--model", "qwen2.5-0.5b-instruct", "-f", "json")
    assert json.loads(out)["layer"] == "engine" and json.loads(out)["value"] == 4096
    assert famous("set", "context-size=2048", "--model", "qwen2.5-0.5b-instruct")[0] == 0
    _, out, _ = famous("get", "context-size", "--model", "qwen2.5-0.5b-instruct", "-f", "json")
    assert json.loads(out) == {"key": "context-size", "value": 2048, "layer": "user"}
    monkeypatch.setenv("FAMOUS_CONTEXT_SIZE", "1024")
    _, out, _ = famous("get", "context-size", "--model", "qwen2.5-0.5b-instruct")
    assert out.strip() == "1024"
    monkeypatch.delenv("FAMOUS_CONTEXT_SIZE")
    assert famous("unset", "context-size", "--model", "qwen2.5-0.5b-instruct")[0] == 0
    _, out, _ = famous("get", "context-size", "--model", "qwen2.5-0.5b-instruct")
    assert out.strip() == "4096"


def test_set_validates_before_writing(famous_home: Path) -> None:
    code, _, err = famous("set", "http.port=eighty")
    assert code == exits.ERROR and "whole number" in err
    code, _, err = famous("set", "http.prot=80")
    assert code == exits.NOT_FOUND and "http.port" in err
    code, _, _ = famous("set", "http.port=9000", "warp=1")
    assert code == exits.NOT_FOUND
    assert not (famous_home / "config.yaml").exists()
    assert famous("set", "http.port", "9000")[0] == 0
    assert famous("get", "http.port")[1].strip() == "9000"


def test_broken_package_directory_exits_5_and_writes_nothing(
    tmp_path: Path, famous_home: Path
) -> None:
    pkg = write_package(
        tmp_path, engine=GOOD_ENGINE.format(name="cpu").replace("vendor:", "vendr:")
    )
    for command in (
        ["engines", str(pkg)],
        ["show-model", str(pkg)],
        ["use-engine", str(pkg), "cpu"],
    ):
        code, _, err = famous(*command)
        assert code == exits.INVALID_MANIFEST, command
        assert f"{pkg}/engines/cpu/engine.yaml:4: vendr: unknown key 'vendr'" in err
    assert not famous_home.exists()


def test_the_console_script_runs() -> None:
    done = subprocess.run(
        [
            sys.executable,
            "-m",
            "famous",
            "engines",
            "qwen2.5-0.5b-instruct",
            "--root",
            str(machine_root("hp-proliant-rl300-gen11-altra")),
        ],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    assert "* ampere" in done.stdout


def test_packages_under_famous_home_are_found_but_never_shadow_builtins(famous_home: Path) -> None:
    write_package(famous_home / "packages", name="tiny")
    write_package(famous_home / "packages", name="qwen2.5-0.5b-instruct")  # cannot shadow
    _, out, _ = famous("models", "-f", "json")
    sources = {m["name"]: m["source"] for m in json.loads(out)}
    assert sources["tiny"] == "user" and sources["qwen2.5-0.5b-instruct"] == "built-in"
    code, out, _ = famous("engines", "tiny", "--root", str(machine_root("mustang")), "-f", "json")
    assert code == 0 and [r["engine"] for r in json.loads(out) if r["selected"]] == ["cpu"]
    _, out, _ = famous("show-model", "qwen2.5-0.5b-instruct", "-f", "json")
    assert json.loads(out)["model"]["license"] == "apache-2.0"


def test_run_names_the_missing_runtime_and_what_would_run_instead(
    tmp_path: Path, famous_home: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    real_find_spec = importlib.util.find_spec
    monkeypatch.setattr(  # vLLM missing even where it is installed
        importlib.util,
        "find_spec",
        lambda name, *a, **k: None if name == "vllm" else real_find_spec(name, *a, **k),
    )
    monkeypatch.setenv("FAMOUS_HARDWARE_ROOT", str(machine_root("mustang")))
    pkg = write_package(tmp_path, name="tiny")
    fancy = GOOD_ENGINE.format(name="fancy").replace("runtime: llamacpp", "runtime: vllm")
    fancy = fancy.replace(
        "architecture: amd64", "architecture: amd64\n      manufacturer-id: GenuineIntel"
    )
    (pkg / "engines" / "fancy").mkdir()
    (pkg / "engines" / "fancy" / "engine.yaml").write_text(fancy)
    code, _, err = famous("run", str(pkg), "hello")
    assert code == exits.INCOMPATIBLE
    assert "engine fancy of tiny needs the vllm runtime" in err and "pip install" in err
    assert "famous run tiny --engine cpu" in err
    assert not (famous_home / "models").exists()  # nothing was downloaded


def test_runtime_keys_are_documented_and_settable(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("FAMOUS_HARDWARE_ROOT", str(machine_root("raspberry-pi-5")))
    model = "qwen2.5-0.5b-instruct"  # the `cpu` engine here: the llamacpp runtime
    _, out, _ = famous("show-engine", model)
    assert "threads = (runtime default)  (runtime)  - decode threads" in out
    _, out, _ = famous("show-engine", model, "-f", "json")
    assert "parallel" in json.loads(out)["runtime-keys"]
    assert famous("set", "threads=3", "--model", model)[0] == 0
    _, out, _ = famous("get", "threads", "--model", model, "-f", "json")
    assert json.loads(out) == {"key": "threads", "value": 3, "layer": "user"}
    assert famous("set", "warp-speed=9", "--model", model)[0] == exits.NOT_FOUND

    from famous.services.selection import artifact_configuration

    runtime, configuration = artifact_configuration(model, "cpu", "gguf")
    assert runtime == "llamacpp" and configuration["threads"] == 3
    assert configuration["context-size"] == 4096 and "parallel" not in configuration


def test_engines_with_a_missing_root_names_it(tmp_path: Path) -> None:
    missing = tmp_path / "no-capture"
    code, out, err = famous("engines", "qwen2.5-0.5b-instruct", "--root", str(missing))
    assert code == exits.USAGE
    assert f"hardware root {missing} does not exist" in err
    assert "no engine can run here" not in out + err


def test_engines_names_an_accelerator_no_engine_uses() -> None:
    root = str(machine_root("lenovo-thinkpad-p16s"))
    code, out, _ = famous("engines", "qwen2.5-0.5b-instruct", "--root", root)
    assert code == 0
    assert (
        "NPU 0000:c5:00.1 (AMD XDNA 2 (Strix / Krackan), 1022:17f0): detected, no engine uses it"
        in out
    )


def test_show_machine_names_a_hailo_npu(tmp_path: Path) -> None:
    from .constructed_roots import hailo_box

    root = hailo_box(tmp_path / "hailo")
    code, out, _ = famous("show-machine", "--root", str(root), "-f", "json")
    assert code == 0
    warnings = json.loads(out)["warnings"]
    assert warnings == ["NPU 0000:02:00.0 (Hailo-8, 1e60:2864): detected, no engine uses it"]


def test_engines_says_an_experimental_engine_needs_an_opt_in(tmp_path: Path) -> None:
    from .constructed_roots import npu_laptop

    root = npu_laptop(tmp_path / "npu")
    code, out, _ = famous("engines", "qwen3-8b", "--root", str(root))
    assert code == exits.INCOMPATIBLE
    assert "no engine can run here" not in out
    assert (
        "no engine runs here automatically; experimental engine intel-npu can run here with an "
        "explicit opt-in: `famous pull qwen3-8b --engine intel-npu`"
    ) in " ".join(out.split())
