"""Runtime adapters: command lines, install checks, health waits, stopping, GGUF metadata."""

from __future__ import annotations

import sys
import time
from pathlib import Path
from typing import ClassVar

import pytest
from serving_harness import NATIVE

from famous.formats import gguf_meta
from famous.runtimes import RUNTIMES, UnknownRuntime, get_runtime
from famous.runtimes.base import (
    EngineStartError,
    HealthTimeout,
    LaunchSpec,
    RuntimeAdapter,
    RuntimeNotInstalled,
)
from famous.runtimes.components import cmake_build_command, cmake_configure_command
from famous.runtimes.llamacpp import (
    LlamaCppPythonServer,
    LlamaServer,
    find_llama_server,
    llamacpp_adapter,
)
from famous.runtimes.native import FamousNativeServer


def _arg(argv: list[str], flag: str) -> str:
    return argv[argv.index(flag) + 1]


def test_gguf_metadata(tiny_models: dict[str, Path]) -> None:
    llama = gguf_meta.read_metadata(tiny_models["llama"])
    assert gguf_meta.architecture(llama) == "llama"
    assert gguf_meta.context_length(llama) == 4096
    assert gguf_meta.has_chat_template(llama)
    assert not gguf_meta.is_embedding_model(llama)
    assert llama["tokenizer.ggml.tokens"] is None  # long arrays are skipped, not loaded
    bert = gguf_meta.read_metadata(tiny_models["bert"])
    assert gguf_meta.is_embedding_model(bert)
    assert gguf_meta.pooling_type(bert) == "mean"


def test_not_gguf_is_a_clear_error(tmp_path: Path) -> None:
    bad = tmp_path / "x.gguf"
    bad.write_bytes(b"PK\x03\x04 not a gguf")
    with pytest.raises(gguf_meta.GGUFError, match="not a GGUF file"):
        gguf_meta.read_metadata(bad)


def test_llama_cpp_python_command(tiny_models: dict[str, Path]) -> None:
    adapter = LlamaCppPythonServer(
        {"ctx-size": 512, "threads": 3, "batch-size": 64, "flash-attn": True, "n_gpu_layers": 0}
    )
    spec = LaunchSpec(name="tiny", model_path=tiny_models["llama"])
    argv = adapter.command(spec, 4321)
    assert argv[:3] == [sys.executable, "-m", "llama_cpp.server"]
    assert _arg(argv, "--model_alias") == "tiny"
    assert _arg(argv, "--host") == "127.0.0.1"
    assert _arg(argv, "--port") == "4321"
    assert _arg(argv, "--n_ctx") == "512"
    assert _arg(argv, "--n_threads") == "3"
    assert _arg(argv, "--n_batch") == "64"
    assert _arg(argv, "--flash_attn") == "true"
    assert _arg(argv, "--interrupt_requests") == "false"
    assert _arg(argv, "--embedding") == "false"
    assert "--chat_format" not in argv  # the GGUF carries a template
    emb = adapter.command(LaunchSpec(name="e", model_path=tiny_models["bert"]), 1)
    assert _arg(emb, "--embedding") == "true"  # detected from the GGUF


def test_chat_format_when_gguf_has_no_template(tmp_path: Path) -> None:
    from tiny_gguf import write_llama

    plain = write_llama(tmp_path / "plain.gguf", chat_template=None, vocab_size=300)
    argv = LlamaCppPythonServer().command(LaunchSpec(name="p", model_path=plain), 1)
    assert _arg(argv, "--chat_format") == "chatml"
    native = LlamaServer({}, binary=Path("/bin/true")).command(
        LaunchSpec(name="p", model_path=plain), 1
    )
    assert _arg(native, "--chat-template") == "chatml"


def test_llama_server_command(tiny_models: dict[str, Path]) -> None:
    adapter = LlamaServer(
        {"parallel": 4, "flash_attn": "auto", "ctx_size": 2048}, Path("/bin/true")
    )
    argv = adapter.command(LaunchSpec(name="tiny", model_path=tiny_models["llama"]), 9)
    assert argv[0] == "/bin/true"
    assert _arg(argv, "--alias") == "tiny"
    assert _arg(argv, "--parallel") == "4"
    assert _arg(argv, "--flash-attn") == "auto"
    assert _arg(argv, "--ctx-size") == str(4 * 2048)  # every slot gets the whole context
    assert "--no-webui" in argv
    emb = adapter.command(LaunchSpec(name="e", model_path=tiny_models["bert"]), 9)
    assert "--embeddings" in emb and _arg(emb, "--pooling") == "mean"
    assert adapter.health_path == "/health"


def test_a_reranker_is_started_with_reranking_and_serves_only_rerank(
    tiny_models: dict[str, Path],
) -> None:
    """A GGUF with rank pooling (or a file registered with reranking: true) is a reranker:
    llama-server starts it with --reranking, and every other route is refused; llama-cpp-
    python's server has no rerank route, and models that are not rerankers serve none."""
    reranker = LaunchSpec(name="rr", model_path=tiny_models["reranker"])
    assert gguf_meta.pooling_type(gguf_meta.read_metadata(tiny_models["reranker"])) == "rank"
    native = LlamaServer({}, Path("/bin/true"))
    argv = native.command(reranker, 9)
    assert "--reranking" in argv
    assert not {"--jinja", "--chat-template", "--embeddings"} & set(argv)
    limits = native.limits(reranker)
    assert "rerank" not in limits
    for kind in ("chat", "completions", "embeddings"):
        assert "it serves a reranker (POST /v1/rerank)" in limits[kind]
    flagged = LaunchSpec(name="b", model_path=tiny_models["bert"], configuration={"reranking": 1})
    assert "--reranking" in native.command(flagged, 9)
    for model, kind in (("llama", "a text-generation"), ("bert", "an embedding")):
        refused = native.limits(LaunchSpec(name="x", model_path=tiny_models[model]))["rerank"]
        assert f"it serves {kind} model" in refused and "reranking: true" in refused
    python = LlamaCppPythonServer().limits(reranker)
    assert "famous install-component llama-server" in python["rerank"]
    assert "reranker" in python["chat"]
    assert "llama-server" in FamousNativeServer().limits(reranker)["rerank"]


def test_server_choice(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv("FAMOUS_HOME", str(tmp_path))
    monkeypatch.delenv("FAMOUS_LLAMA_SERVER", raising=False)
    monkeypatch.setenv("PATH", str(tmp_path / "empty"))
    assert isinstance(llamacpp_adapter({}), LlamaCppPythonServer)
    fake = tmp_path / "llama-server"
    fake.write_text("#!/bin/sh\n")
    fake.chmod(0o755)
    chosen = llamacpp_adapter({"llama-server-path": str(fake)})
    assert isinstance(chosen, LlamaServer) and chosen.binary == fake
    assert isinstance(llamacpp_adapter({"server": "llama-cpp-python"}), LlamaCppPythonServer)
    with pytest.raises(ValueError, match="server="):
        llamacpp_adapter({"server": "bogus"})


def test_missing_runtime_names_install_command(monkeypatch: pytest.MonkeyPatch, tmp_path) -> None:
    monkeypatch.setenv("FAMOUS_HOME", str(tmp_path))
    monkeypatch.delenv("FAMOUS_LLAMA_SERVER", raising=False)
    monkeypatch.setenv("PATH", str(tmp_path / "empty"))
    assert find_llama_server({}) is None
    with pytest.raises(RuntimeNotInstalled) as info:
        LlamaServer({"server": "llama-server"}).check_installed()
    assert "famous install-component llama-server" in str(info.value)
    with pytest.raises(RuntimeNotInstalled) as info:
        FamousNativeServer().check_installed() if not _genai_server() else _raise_native()
    assert "pip install 'famous[genai]'" in str(info.value)
    with pytest.raises(UnknownRuntime, match="llamacpp"):
        get_runtime("no-such-runtime")
    assert {"llamacpp", "famous-native"} <= set(RUNTIMES)


def _genai_server() -> bool:
    import importlib.util

    try:
        return importlib.util.find_spec("famous.runtimes.workers.native") is not None
    except ModuleNotFoundError:
        return False


def _raise_native() -> None:
    raise RuntimeNotInstalled("famous-native", "(simulated)", FamousNativeServer.install_command)


def test_native_command(tmp_path: Path) -> None:
    argv = FamousNativeServer().command(LaunchSpec(name="n", model_path=tmp_path), 7)
    assert argv[1:3] == ["-m", "famous.runtimes.workers.native"]
    assert _arg(argv, "--model") == str(tmp_path)
    assert _arg(argv, "--port") == "7"
    # The keys the built-in packages' native-cpu engines set reach the server.
    configured = FamousNativeServer({"context-size": 2048, "dtype": "bfloat16", "threads": 3})
    argv = configured.command(LaunchSpec(name="n", model_path=tmp_path), 7)
    assert _arg(argv, "--max-seq-len") == "2048" and _arg(argv, "--dtype") == "bf16"
    assert _arg(argv, "--threads") == "3" and _arg(argv, "--served-model-name") == "n"
    assert not configured.unknown_keys({"context-size": 1, "dtype": "float32"})


def test_native_openmp_threads_wait_passively(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    spec = LaunchSpec(name="n", model_path=tmp_path)
    monkeypatch.delenv("OMP_WAIT_POLICY", raising=False)
    assert FamousNativeServer().environment(spec)["OMP_WAIT_POLICY"] == "passive"
    # The user's own choice, from the shell or the engine's launch, wins.
    monkeypatch.setenv("OMP_WAIT_POLICY", "active")
    assert FamousNativeServer().environment(spec)["OMP_WAIT_POLICY"] == "active"
    monkeypatch.delenv("OMP_WAIT_POLICY")
    spec = LaunchSpec(name="n", model_path=tmp_path, env={"OMP_WAIT_POLICY": "active"})
    assert FamousNativeServer().environment(spec)["OMP_WAIT_POLICY"] == "active"


def test_component_build_commands(tmp_path: Path) -> None:
    configure = cmake_configure_command(tmp_path / "src", tmp_path / "build", gpu="cuda")
    assert "-DLLAMA_USE_PREBUILT_UI=OFF" in configure
    assert "-DGGML_CUDA=ON" in configure
    assert "-DLLAMA_BUILD_SERVER=ON" in configure
    build = cmake_build_command(tmp_path / "build", jobs=2)
    targets = [build[i + 1] for i, arg in enumerate(build) if arg == "--target"]
    assert targets == ["llama-server", "llama-quantize", "llama-bench"]  # one build, three tools


class _Silent(RuntimeAdapter):
    """A 'server' that never listens: the health wait must time out and say on what."""

    runtime: ClassVar[str] = "test"
    server: ClassVar[str] = "sleep"
    install_command: ClassVar[str] = "-"

    def check_installed(self) -> None:
        return None

    def command(self, spec: LaunchSpec, port: int) -> list[str]:
        return [
            sys.executable,
            "-c",
            "import time; print('warming up', flush=True); time.sleep(60)",
        ]


class _Crashing(_Silent):
    def command(self, spec: LaunchSpec, port: int) -> list[str]:
        return [
            sys.executable,
            "-c",
            "import sys; print('bad model file', flush=True); sys.exit(3)",
        ]


def test_health_timeout_names_what_it_waited_for(tmp_path: Path) -> None:
    spec = LaunchSpec(name="m", model_path=tmp_path, log_path=tmp_path / "m.log")
    proc = _Silent().launch(spec)
    try:
        started = time.monotonic()
        with pytest.raises(HealthTimeout) as info:
            proc.wait_healthy(timeout=1.0)
        assert time.monotonic() - started < 5
        message = str(info.value)
        assert f"GET http://127.0.0.1:{proc.port}/v1/models" in message
        assert "timed out after 1 s" in message
        assert "warming up" in message  # the log tail comes with it
    finally:
        started = time.monotonic()
        proc.stop(grace=2)
    assert not proc.alive()


def test_engine_that_exits_reports_its_log(tmp_path: Path) -> None:
    spec = LaunchSpec(name="c", model_path=tmp_path, log_path=tmp_path / "c.log")
    proc = _Crashing().launch(spec)
    with pytest.raises(EngineStartError) as info:
        proc.wait_healthy(timeout=20)
    assert "exited with status 3" in str(info.value)
    assert "bad model file" in str(info.value)


def test_stop_escalates_to_sigkill(tmp_path: Path) -> None:
    class _Stubborn(_Silent):
        def command(self, spec: LaunchSpec, port: int) -> list[str]:
            code = (
                "import signal, time; signal.signal(signal.SIGTERM, signal.SIG_IGN); "
                "print('ar' + 'med', flush=True); time.sleep(60)"
            )
            return [sys.executable, "-c", code]

    proc = _Stubborn().launch(
        LaunchSpec(name="s", model_path=tmp_path, log_path=tmp_path / "s.log")
    )
    deadline = time.monotonic() + 10
    while "armed" not in proc.log_tail() and time.monotonic() < deadline:
        time.sleep(0.05)
    code = proc.stop(grace=0.5)
    assert code == -9
    assert not proc.alive()


def test_real_llama_cpp_python_launch(tiny_models: dict[str, Path], tmp_path: Path) -> None:
    adapter = get_runtime("llamacpp", {"server": "llama-cpp-python", "ctx-size": 256})
    spec = LaunchSpec(name="tiny", model_path=tiny_models["llama"], log_path=tmp_path / "t.log")
    proc = adapter.launch(spec)
    try:
        proc.wait_healthy(timeout=60)
        assert proc.healthy()
    finally:
        proc.stop()
    assert not proc.alive()
    assert "famous starts" in proc.log_path.read_text()


def test_real_llama_server_launch(tiny_models: dict[str, Path], tmp_path: Path) -> None:
    import httpx

    config = {"server": "llama-server", "parallel": 2, "ctx-size": 512}
    adapter = get_runtime("llamacpp", {**config, "llama-server-path": str(NATIVE)})
    spec = LaunchSpec(name="tiny", model_path=tiny_models["llama"], log_path=tmp_path / "n.log")
    proc = adapter.launch(spec)
    try:
        proc.wait_healthy(timeout=60)
        body = {"model": "tiny", "messages": [{"role": "user", "content": "hi"}], "max_tokens": 5}
        resp = httpx.post(proc.base_url + "/v1/chat/completions", json=body, timeout=60)
        assert resp.status_code == 200, resp.text
        assert resp.json()["usage"]["completion_tokens"] == 5
    finally:
        proc.stop()
