"""``famous bench`` on real engines (llama.cpp's llama-server and famous-native on tiny
models), and measured selection: the measurements of this machine rank engines, those of
another machine do not."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import pytest
import yaml

from famous.hardware.fingerprint import machine_fingerprint
from famous.hardware.report import HardwareReport
from famous.store.measurements import Measurement, measurements_for, record_measurement

TESTS = Path(__file__).resolve().parents[1]
for folder in (TESTS / "serving", TESTS / "engines"):  # the tiny GGUF and HF writers
    if str(folder) not in sys.path:
        sys.path.insert(0, str(folder))

PACKAGE = "tiny-bench"
QWEN = "qwen2.5-0.5b-instruct"
CPU = {
    "anyof": [{"type": "cpu", "architecture": "amd64"}, {"type": "cpu", "architecture": "arm64"}]
}


def _engine(name: str, runtime: str, options: list[str], config: dict, devices=CPU) -> dict:
    return {
        "name": name,
        "summary": f"{name} for the bench tests",
        "description": "An engine of the bench tests' tiny package.",
        "vendor": "famous",
        "runtime": runtime,
        "devices": devices,
        "model-options": options,
        "default-model-option": options[0],
        "configuration": config,
    }


def _register(variant: str, engine: str, fmt: str, path: Path) -> None:
    from famous.store.artifacts import ArtifactFile, register_artifact

    files = [path] if path.is_file() else sorted(p for p in path.rglob("*") if p.is_file())
    root = path.parent if path.is_file() else path
    register_artifact(
        model=PACKAGE,
        engine=engine,
        variant=variant,
        format=fmt,
        path=path,
        root=root,
        files=[
            ArtifactFile(relpath=p.relative_to(root).as_posix(), size_bytes=p.stat().st_size)
            for p in files
        ],
        source="import",
        owned=False,
    )


@pytest.fixture
def tiny_package(famous_home: Path, tmp_path: Path) -> Path:
    """A user package: a tiny GGUF for llama-server, a tiny HF Llama for famous-native, a
    broken GGUF that fails to start, and an engine for a machine this is not."""
    from tiny_gguf import write_llama as write_gguf
    from tiny_hf import write_llama as write_hf

    import provision

    gguf = write_gguf(tmp_path / "tiny.gguf", context=1024)
    hf = write_hf(tmp_path / "tiny-hf", hold_down_specials=True)
    broken = tmp_path / "broken.gguf"
    broken.write_bytes(b"GGUF" + b"\0" * 64)
    options = {
        "f32": ("gguf", "F32", gguf),
        "fp32": ("safetensors", "fp32", hf),
        "int8": ("safetensors", "int8", hf),
        "truncated": ("gguf", "F32", broken),
    }
    pkg = famous_home / "packages" / PACKAGE
    model = {
        "name": PACKAGE,
        "description": "Tiny random models for the bench tests.",
        "license": "apache-2.0",
        "capabilities": ["text"],
        "shape": {
            "parameters": 100_000,
            "layers": 2,
            "kv-heads": 2,
            "head-dim": 16,
            "context": 512,
        },
        "options": {
            name: {
                "repo": "local/tiny",
                "format": f,
                "quantization": q,
                "files": [p.name],
                "size": 1 << 20,
            }
            for name, (f, q, p) in options.items()
        },
    }
    server = {
        "server": "llama-server",
        "llama-server-path": str(provision.llama_server()),
        "context-size": 512,
    }
    engines = [
        _engine("llama-server", "llamacpp", ["f32"], server),
        _engine("native-cpu", "famous-native", ["fp32"], {"context-size": 512, "dtype": "float32"}),
        _engine(
            "native-int8", "famous-native", ["int8"], {"context-size": 512, "quantize": "int8"}
        ),
        _engine("truncated", "llamacpp", ["truncated"], server),
        _engine(
            "arm-only",
            "llamacpp",
            ["f32"],
            server,
            {"allof": [{"type": "cpu", "architecture": "arm64"}]},
        ),
    ]
    (pkg / "engines").mkdir(parents=True)
    (pkg / "model.yaml").write_text(yaml.safe_dump(model))
    for e in engines:
        (pkg / "engines" / e["name"]).mkdir()
        (pkg / "engines" / e["name"] / "engine.yaml").write_text(yaml.safe_dump(e))
    for name, (f, _q, path) in options.items():
        _register(
            name,
            {"f32": "llama-server", "fp32": "native-cpu", "int8": "native-int8"}.get(
                name, "truncated"
            ),
            f,
            path,
        )
    return pkg


def test_bench_measures_real_engines_stores_them_and_auto_pins(
    cli, tiny_package: Path, cpu_report: HardwareReport, tmp_path: Path
) -> None:
    from llama_cpp import Llama
    from transformers import AutoTokenizer

    from famous.services.bench_workload import PROMPT_WORDS, prompt
    from famous.store.selections import pinned_engine

    r = cli("bench", PACKAGE, "--streams", "2", "--max-tokens", "8", "--auto", "--format", "json")
    assert r.exit_code == 0, r.output
    report = json.loads(r.stdout)
    cases = {c["engine"]: c for c in report["cases"]}
    assert cases["arm-only"]["status"] == "skipped"
    assert "arm64" in cases["arm-only"]["reason"]
    assert cases["truncated"]["status"] == "failed"
    assert "exited with status 1 before it was healthy" in cases["truncated"]["reason"]
    for engine in ("llama-server", "native-cpu", "native-int8"):  # int8: quantized at load
        m = cases[engine]["measurement"]
        assert cases[engine]["status"] == "ok", cases[engine]
        assert m["pp_tps"] > 0 and m["decode_tps"] > 0 and m["throughput_tps"] > 0
        assert 0 < m["ttft_ms"] < 60_000 and m["streams"] == 2 and m["max_tokens"] == 8
        assert 5 < m["peak_rss_mb"] < 8192  # a real process tree was sampled
    assert cases["llama-server"]["server"] == "llama-server"
    from famous.store.deployments import log_path_for

    int8_log = log_path_for(f"bench-{PACKAGE}-native-int8-int8").read_text()
    assert "--quantize int8" in int8_log  # the engine's configuration reached its command
    # prompt_tokens is each server's own count: llama.cpp's tokenizer and transformers' agree
    text = prompt(2, PROMPT_WORDS)  # request 1 is the warm-up, request 2 the prompt timing
    gguf = str(tmp_path / "tiny.gguf")
    ids = Llama(model_path=gguf, vocab_only=True, verbose=False).tokenize(text.encode())
    assert cases["llama-server"]["measurement"]["prompt_tokens"] == len(ids)
    hf_ids = AutoTokenizer.from_pretrained(tmp_path / "tiny-hf")(text)["input_ids"]
    assert cases["native-cpu"]["measurement"]["prompt_tokens"] == len(hf_ids)
    # stored under this machine's fingerprint; --auto pinned the best decode
    stored = measurements_for(PACKAGE, machine_fingerprint(cpu_report))
    assert {(m.engine, m.variant) for m in stored} == {
        ("llama-server", "f32"),
        ("native-cpu", "fp32"),
        ("native-int8", "int8"),
    }
    best = max(stored, key=lambda m: m.decode_tps)
    assert report["best"] == [best.engine, best.variant]
    assert report["pinned"] == best.engine == pinned_engine(PACKAGE).engine
    assert report["score_choice"] == ["llama-server", "f32"]  # scores tie: by name
    chosen = next(m for m in stored if m.engine == "llama-server")
    assert report["regret"] == pytest.approx(
        (best.decode_tps - chosen.decode_tps) / best.decode_tps, abs=1e-4
    )
    assert report["measured_choice"] == report["best"] and report["measured_regret"] == 0


def _measure(engine: str, variant: str, fingerprint: str, decode: float, ttft: float) -> None:
    record_measurement(
        Measurement(
            model=QWEN,
            engine=engine,
            variant=variant,
            fingerprint=fingerprint,
            pp_tps=100.0,
            decode_tps=decode,
            streams=4,
            throughput_tps=decode * 2,
            ttft_ms=ttft,
            peak_rss_mb=500.0,
            prompt_tokens=128,
            max_tokens=32,
        )
    )


def test_measured_selection_ranks_engines_on_this_machine_only(
    cli, famous_home: Path, cpu_report: HardwareReport
) -> None:
    """By score, llama.cpp's cpu engine wins here; measurements of this machine saying
    native-cpu decodes faster make it the choice, explained; another machine's do not."""

    def engines() -> dict:
        r = cli("engines", QWEN, "--format", "json")
        assert r.exit_code == 0, r.output
        return {row["engine"]: row for row in json.loads(r.stdout)}

    assert engines()["cpu"]["selected"]
    _measure("native-cpu", "bf16", "another-machine", 90.0, 50.0)
    _measure("cpu", "q4_k_m", "another-machine", 10.0, 500.0)
    assert engines()["cpu"]["selected"] and "measured" not in engines()["cpu"]
    here = machine_fingerprint(cpu_report)
    _measure("native-cpu", "bf16", here, 42.0, 400.0)
    _measure("cpu", "q4_k_m", here, 31.0, 120.0)
    rows = engines()
    assert rows["native-cpu"]["selected"] and not rows["cpu"]["selected"]
    assert rows["native-cpu"]["measured"] == "measured 42.0 tok/s decode (bf16) vs 31.0 for cpu"
    table = cli("engines", QWEN).stdout
    assert "native-cpu chosen by measurement: measured 42.0 tok/s decode" in table
    shown = cli("show-engine", QWEN).stdout
    assert "engine:" in shown and "native-cpu" in shown.splitlines()[0]
    assert "measured:" in shown and "vs 31.0 for cpu" in shown
    other = cli("show-engine", QWEN, "cpu").stdout
    assert "measured 31.0 tok/s decode (q4_k_m) behind 42.0 for native-cpu" in other
    # the objective is a setting: lowest time to first token wins
    assert cli("set", "selection.objective=ttft").exit_code == 0
    assert engines()["cpu"]["selected"]
    assert cli("set", "selection.objective=latency").exit_code == 0
    bad = cli("engines", QWEN)
    assert bad.exit_code != 0 and "selection objective 'latency'" in bad.output
    assert cli("set", "selection.objective=decode").exit_code == 0
    # a pinned engine wins, and runs the variant of it that measured best
    _measure("cpu", "q8_0", here, 35.0, 150.0)
    assert cli("use-engine", QWEN, "cpu").exit_code == 0
    rows = engines()
    assert rows["cpu"]["selected"] and rows["cpu"]["option"] == "q8_0"
    assert "cpu pinned (famous use-engine): measured 35.0 tok/s decode (q8_0) behind 42.0" in (
        cli("engines", QWEN).stdout
    )
    assert cli("use-engine", QWEN, "--auto").exit_code == 0
    # measured selection off: the manifest score decides again
    assert cli("set", "selection.measured=false").exit_code == 0
    assert engines()["cpu"]["selected"]


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--engines", "nope"], "has no engine 'nope'"),
        (["--variants", "q9_9"], "has no variant 'q9_9'"),
        (["--streams", "0"], "--streams must be between 1 and 64, got 0"),
        (["--streams", "100000"], "--streams must be between 1 and 64, got 100000"),
        (["--max-tokens", "1"], "--max-tokens must be between 2 and 4096, got 1"),
        (["--objective", "speed"], "--objective: selection objective 'speed' is not one of"),
    ],
)
def test_bench_bad_input_gets_a_clear_error(cli, args: list[str], message: str) -> None:
    r = cli("bench", QWEN, *args)
    assert r.exit_code in (2, 4), r.output
    assert message in r.output
    assert not measurements_for(QWEN)  # nothing ran, nothing was stored


def test_regret_is_the_share_lost_against_the_best() -> None:
    from famous.matchmaker.measured import regret

    assert regret(42.0, 31.0, "decode") == pytest.approx(11 / 42)
    assert regret(100.0, 100.0, "throughput") == 0
    # time to first token: lower wins; the share is of speed, 1 / time
    assert regret(120.0, 400.0, "ttft") == pytest.approx(1 - 120 / 400)


def test_fingerprint_is_stable_and_names_the_silicon(cpu_report: HardwareReport) -> None:
    import copy

    same = copy.deepcopy(cpu_report)
    same.memory.available_bytes //= 2  # free memory moves; the machine does not
    same.warnings.append("a probe failed")
    assert machine_fingerprint(same) == machine_fingerprint(cpu_report)
    other = copy.deepcopy(cpu_report)
    other.cpus[0].flags.append("avx512f")
    assert machine_fingerprint(other) != machine_fingerprint(cpu_report)


def test_a_bench_that_measured_nothing_fails(cli, tiny_package: Path) -> None:
    """Only engines that cannot start or run here: the table says why, the exit code says
    that nothing was measured."""
    r = cli("bench", PACKAGE, "--engines", "truncated,arm-only", "--max-tokens", "8")
    assert r.exit_code == 1, r.output
    assert "failed" in r.output and "skipped" in r.output
