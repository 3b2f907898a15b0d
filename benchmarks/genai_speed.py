"""famous native engine vs transformers.generate (and llama.cpp F16) on the same weights.

    python benchmarks/genai_speed.py            # both shapes, fp32 and bf16
    python benchmarks/genai_speed.py --quick    # 135M shape only
    python benchmarks/genai_speed.py --quick --rows quant --json out.json
                                                # quantized rows only, and a JSON file

"famous" decodes through famous's CPU kernels; "famous-torch-ops" is the same model with
them switched off (FAMOUS_NATIVE_KERNELS=0), to show what the kernels bring.

Random weights at a SmolLM2-135M shape and a Llama-3.2-1B shape are saved once (bf16
safetensors, so every engine reads identical values). Each engine × dtype runs in its own
process (clean peak RSS). Memory bandwidth is measured in the same run (the best of three
1 GiB reads, see ``bandwidth_gbs``);
the decode bound is bandwidth (measured right before and after each engine's run; the
higher of the two) ÷ bytes of weights read per token (every block weight, the
final norm and the LM head — the input embedding table is excluded, it is only gathered).

Quantized rows: famous's weight-only recipes (int8 per channel; int4 blocks of 32 with an
int8 embedding / LM head; q4_0: int4 blocks of 32 everywhere) decoding through its
quantized GEMVs, beside llama.cpp's Q8_0 and Q4_0 (every weight matrix, the tied
embedding / LM head included, made by llama.cpp's own quantizer with ``pure``) of the same
checkpoint. Their bound counts the bytes each engine actually streams per token (codes
and scales, as stored). famous's quantized GEMVs quantize their input to int8 blocks of 32,
as llama.cpp's do (``FAMOUS_QUANT_ACTIVATIONS=exact`` measures the weight-only path). Each
row records the machine's 1-minute load average around its run: on a shared machine,
compare the ratios of one run.
"""

from __future__ import annotations

import argparse
import ctypes
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

THREADS = int(os.environ.get("FAMOUS_BENCH_THREADS", "2"))
REPEATS = int(os.environ.get("FAMOUS_BENCH_REPEATS", "3"))
SRC = str(Path(__file__).resolve().parents[1] / "src")
# famous's weight-only recipes measured as "dtypes" of the famous engine
QUANT_RECIPES = ("int8", "int4", "q4_0")
FLOAT_ROWS = [
    ("famous", "fp32"),
    ("famous-torch-ops", "fp32"),
    ("transformers", "fp32"),
    ("famous", "bf16"),
    ("famous-torch-ops", "bf16"),
    ("transformers", "bf16"),
]
QUANT_ROWS = [("famous", "fp32"), *(("famous", r) for r in QUANT_RECIPES)]
CPP_QUANT = ("q8_0", "q4_0")  # llama.cpp's types beside famous's int8 / int4

SHAPES = {
    "smollm2-135m": dict(
        hidden_size=576,
        intermediate_size=1536,
        num_hidden_layers=30,
        num_attention_heads=9,
        num_key_value_heads=3,
        vocab_size=49152,
        rope_theta=100000.0,
        tie_word_embeddings=True,
        max_position_embeddings=8192,
        rms_norm_eps=1e-5,
    ),
    "llama-3.2-1b": dict(
        hidden_size=2048,
        intermediate_size=8192,
        num_hidden_layers=16,
        num_attention_heads=32,
        num_key_value_heads=8,
        head_dim=64,
        vocab_size=128256,
        tie_word_embeddings=True,
        max_position_embeddings=131072,
        rms_norm_eps=1e-5,
        rope_theta=500000.0,
        rope_scaling={
            "rope_type": "llama3",
            "factor": 32.0,
            "low_freq_factor": 1.0,
            "high_freq_factor": 4.0,
            "original_max_position_embeddings": 8192,
        },
    ),
}


# ------------------------------------------------------------------------------ setup


def make_checkpoint(shape: str, out: Path) -> None:
    import torch
    from transformers import AutoModelForCausalLM, LlamaConfig

    torch.manual_seed(0)
    cfg = LlamaConfig(**SHAPES[shape], bos_token_id=1, eos_token_id=2)
    with torch.device("meta"):
        model = AutoModelForCausalLM.from_config(cfg, dtype=torch.bfloat16)
    model = model.to_empty(device="cpu")
    with torch.no_grad():
        for name, p in model.named_parameters():
            if name.endswith("norm.weight"):
                p.fill_(1.0)
            else:
                p.normal_(0.0, 0.02)
    model.save_pretrained(out)


def write_gguf_f16(model_dir: Path, out: Path) -> None:
    """A llama-arch F16 GGUF without a vocabulary (benchmarks feed token ids)."""
    import gguf
    import numpy as np
    from safetensors import safe_open

    sys.path.insert(0, SRC)
    from famous.genai.weight_map import permute_rope

    hf = json.loads((model_dir / "config.json").read_text())
    heads, kv = hf["num_attention_heads"], hf["num_key_value_heads"]
    hd = hf.get("head_dim") or hf["hidden_size"] // heads
    w = gguf.GGUFWriter(str(out), "llama")
    w.add_context_length(4096)
    w.add_embedding_length(hf["hidden_size"])
    w.add_block_count(hf["num_hidden_layers"])
    w.add_feed_forward_length(hf["intermediate_size"])
    w.add_head_count(heads)
    w.add_head_count_kv(kv)
    w.add_rope_dimension_count(hd)
    w.add_rope_freq_base(hf.get("rope_theta") or hf["rope_parameters"]["rope_theta"])
    w.add_layer_norm_rms_eps(hf["rms_norm_eps"])
    w.add_vocab_size(hf["vocab_size"])
    w.add_file_type(gguf.LlamaFileType.MOSTLY_F16)
    w.add_tokenizer_model("no_vocab")
    names = {
        "input_layernorm": "attn_norm",
        "post_attention_layernorm": "ffn_norm",
        "self_attn.q_proj": "attn_q",
        "self_attn.k_proj": "attn_k",
        "self_attn.v_proj": "attn_v",
        "self_attn.o_proj": "attn_output",
        "mlp.gate_proj": "ffn_gate",
        "mlp.up_proj": "ffn_up",
        "mlp.down_proj": "ffn_down",
    }
    with safe_open(str(model_dir / "model.safetensors"), "pt") as f:
        for k in f.keys():  # noqa: SIM118
            t = f.get_tensor(k).float()
            if k == "model.embed_tokens.weight":
                name = "token_embd.weight"
            elif k == "model.norm.weight":
                name = "output_norm.weight"
            elif k == "lm_head.weight":
                name = "output.weight"
            else:
                parts = k.split(".")
                i, rest = parts[2], ".".join(parts[3:-1])
                name = f"blk.{i}.{names[rest]}.weight"
                if rest == "self_attn.q_proj":
                    t = permute_rope(t, heads, hd, inverse=True)
                elif rest == "self_attn.k_proj":
                    t = permute_rope(t, kv, hd, inverse=True)
            arr = t.numpy().astype(np.float32 if t.dim() == 1 else np.float16)
            w.add_tensor(name, arr)
    w.write_header_to_file()
    w.write_kv_data_to_file()
    w.write_tensors_to_file()
    w.close()


# ------------------------------------------------------------------------------ one run (child)


def _proc_status_mb(key: str) -> float:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith(key + ":"):
            return int(line.split()[1]) / 1024
    return float("nan")


def _peak_rss_mb() -> float:
    """This process's high-water RSS (VmHWM starts fresh at exec, unlike ru_maxrss)."""
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
    return float("nan")


def best_of(run, n_new: int) -> tuple[float, float]:
    """The fastest prefill and decode of REPEATS runs: this machine's bandwidth drifts
    with its neighbours, and every engine gets the same treatment."""
    times = [run(n_new) for _ in range(REPEATS)]
    return min(t[0] for t in times), min(t[1] for t in times)


def child(engine: str, model_dir: str, dtype: str, prompt: int, new: int) -> dict:
    import torch

    torch.set_num_threads(THREADS)
    g = torch.Generator().manual_seed(0)
    ids = torch.randint(3, 1000, (1, prompt), generator=g)
    t0 = time.perf_counter()
    if engine.startswith("famous"):
        if engine == "famous-torch-ops":  # famous's modules without its CPU kernels
            os.environ["FAMOUS_NATIVE_KERNELS"] = "0"
        sys.path.insert(0, SRC)
        from famous.genai.kernels.decode import decode
        from famous.genai.loader import load_model

        base = _proc_status_mb("VmRSS")
        recipe = dtype if dtype in QUANT_RECIPES else None
        m = load_model(model_dir, "fp32" if recipe else dtype, max_seq_len=prompt + new + 8)
        if recipe:
            from famous.genai.quantize import get_recipe
            from famous.genai.quantize.modules import apply_recipe

            apply_recipe(m, get_recipe(recipe))
        load_s = time.perf_counter() - t0
        load_peak = _proc_status_mb("VmHWM") - base
        model_mb = sum(p.numel() * p.element_size() for p in m.parameters()) / 2**20
        shard_mb = max(f.stat().st_size for f in Path(model_dir).glob("*.safetensors")) / 2**20
        load_budget = (model_mb + shard_mb) * 1.1
        with torch.inference_mode():

            def run(n_new: int) -> tuple[float, float]:
                cache = m.init_cache(1)
                a = time.perf_counter()
                logits, cache = m(
                    ids,
                    torch.arange(prompt),
                    cache,
                    end=prompt,
                    inplace=True,
                    last_logits_only=True,
                )
                b = time.perf_counter()
                pos = prompt
                for _ in range(n_new):
                    tok = logits[:, -1].argmax(-1, keepdim=True)
                    logits, cache = decode(m, tok, torch.tensor([pos]), cache)
                    pos += 1
                return b - a, time.perf_counter() - b

            run(2)  # warm-up
            pre, dec = best_of(run, new)
    elif engine == "transformers":
        from transformers import AutoModelForCausalLM

        dt = {"fp32": torch.float32, "bf16": torch.bfloat16}[dtype]
        m = AutoModelForCausalLM.from_pretrained(model_dir, dtype=dt).eval()
        load_s = time.perf_counter() - t0
        kw = dict(attention_mask=torch.ones_like(ids), do_sample=False, pad_token_id=0)
        with torch.inference_mode():
            m.generate(ids, max_new_tokens=2, min_new_tokens=2, **kw)  # warm-up

            def run_hf(n_new: int) -> tuple[float, float]:
                a = time.perf_counter()
                m.generate(ids, max_new_tokens=1, min_new_tokens=1, **kw)
                pre = time.perf_counter() - a
                a = time.perf_counter()
                m.generate(ids, max_new_tokens=n_new + 1, min_new_tokens=n_new + 1, **kw)
                return pre, time.perf_counter() - a - pre

            pre, dec = best_of(run_hf, new)
    else:  # llama.cpp
        from llama_cpp import Llama

        m = Llama(
            model_path=model_dir,
            n_ctx=prompt + new + 8,
            n_threads=THREADS,
            n_threads_batch=THREADS,
            n_batch=prompt,
            verbose=False,
        )
        load_s = time.perf_counter() - t0
        toks = ids[0].tolist()

        def run_cpp(n_new: int) -> tuple[float, float]:
            m.reset()
            a = time.perf_counter()
            m.eval(toks)
            b = time.perf_counter()
            for _ in range(n_new):
                m.eval([5])  # a fixed id: the cost is the same as the argmax's token
            return b - a, time.perf_counter() - b

        run_cpp(2)
        pre, dec = best_of(run_cpp, new)
    out = {
        "load_s": load_s,
        "prefill_tok_s": prompt / pre,
        "decode_tok_s": new / dec,
        "peak_rss_mb": _peak_rss_mb(),
    }
    if engine.startswith("famous"):
        out["load_peak_over_baseline_mb"] = load_peak
        out["load_budget_mb"] = load_budget  # (model bytes + largest shard) × 1.1
        out["bytes_per_token"] = streamed_bytes(m)
    else:
        out["bytes_per_token"] = gguf_streamed_bytes(Path(model_dir))
    return out


def streamed_bytes(model) -> int:
    """Bytes a famous decoding step reads: every block's weights (quantized: codes and
    scales as stored), the final norm and the LM head (the embedding when tied; the input
    embedding is only gathered)."""
    from famous.genai.quantize.modules import weight_bytes

    head = model.embed if model.lm_head is None else model.lm_head
    return weight_bytes(model.layers) + weight_bytes(model.norm) + weight_bytes(head)


def gguf_streamed_bytes(path: Path) -> int:
    """The same for a llama.cpp GGUF: every tensor but the token embedding, which counts
    only when it is also the LM head (no output.weight)."""
    import gguf

    tensors = {t.name: int(t.n_bytes) for t in gguf.GGUFReader(str(path)).tensors}
    tied = "output.weight" not in tensors
    return sum(n for name, n in tensors.items() if tied or name != "token_embd.weight")


def llama_quantize(f16: Path, out: Path, ftype: str) -> None:
    """llama.cpp's own quantizer, in a child process (it logs every tensor)."""
    cmd = [sys.executable, __file__, "--llama-quantize", str(f16), str(out), ftype]
    r = subprocess.run(cmd, capture_output=True, text=True, timeout=1800)
    if r.returncode != 0:
        raise RuntimeError(f"llama.cpp could not quantize {f16} to {ftype}:\n{r.stderr[-2000:]}")


def _llama_quantize_here(f16: Path, out: Path, ftype: str) -> None:
    """llama.cpp's quantizer through llama-cpp-python, every matrix in ``ftype``."""
    import llama_cpp

    params = llama_cpp.llama_model_quantize_default_params()
    types = {"q8_0": llama_cpp.LLAMA_FTYPE_MOSTLY_Q8_0, "q4_0": llama_cpp.LLAMA_FTYPE_MOSTLY_Q4_0}
    params.ftype = types[ftype]
    params.pure = True  # no K-quant for the LM head: the same type everywhere
    params.nthread = THREADS
    path_in, path_out = str(f16).encode(), str(out).encode()
    if llama_cpp.llama_model_quantize(path_in, path_out, ctypes.byref(params)) != 0:
        raise RuntimeError(f"llama.cpp could not quantize {f16} to {ftype}")


# ------------------------------------------------------------------------------ parent


def bandwidth_gbs() -> float:
    """The best read bandwidth over 1 GiB of fp32, measured three ways: PyTorch's sum over
    ordinary memory, the same over huge-page memory, and famous's GEMV kernel over
    huge-page memory (several streams per core, as decoding reads). Decoding through huge
    pages would otherwise beat a bound measured on 4 KiB pages."""
    import torch

    sys.path.insert(0, SRC)
    from famous.genai.kernels import cpu_kernels
    from famous.genai.kernels.hugepages import move_to_huge_pages

    torch.set_num_threads(THREADS)
    plain = torch.ones(256 * 1024 * 1024)
    huge = torch.nn.Parameter(torch.ones(256 * 1024 * 1024), requires_grad=False)
    move_to_huge_pages([[huge]])
    probes = [plain.sum, huge.data.sum]
    kernels = cpu_kernels()
    if kernels is not None:
        matrix, x = huge.data.view(-1, 4096), torch.ones(4096)
        probes.append(lambda: kernels.linear(x, matrix))
    best = 0.0
    for probe in probes:
        probe()
        for _ in range(5):
            a = time.perf_counter()
            probe()
            best = max(best, plain.numel() * 4 / (time.perf_counter() - a))
    return best / 1e9


def run_child(engine: str, path: Path, dtype: str, prompt: int, new: int) -> dict | None:
    cmd = [sys.executable, __file__, "--child", engine, str(path), dtype, str(prompt), str(new)]
    r = subprocess.run(cmd, capture_output=True, text=True, timeout=1800)
    if r.returncode != 0:
        sys.stderr.write(f"{engine} {dtype} failed:\n{r.stderr[-2000:]}\n")
        return None
    return json.loads(r.stdout.strip().splitlines()[-1])


def _row(shape: str, engine: str, dtype: str, r: dict, ref: dict | None) -> dict:
    """One table row: the bound is the bandwidth over the bytes this engine streams."""
    bound = r["bandwidth_gbs"] * 1e9 / r["bytes_per_token"]
    return {
        "shape": shape,
        "engine": engine,
        "dtype": dtype,
        "decode_tok_s": r["decode_tok_s"],
        "prefill_tok_s": r["prefill_tok_s"],
        "bandwidth_gbs": r["bandwidth_gbs"],
        "bytes_per_token": r["bytes_per_token"],
        "bound_tok_s": bound,
        "of_bound": r["decode_tok_s"] / bound,
        "decode_x_tf": r["decode_tok_s"] / ref["decode_tok_s"] if ref else None,
        "prefill_x_tf": r["prefill_tok_s"] / ref["prefill_tok_s"] if ref else None,
        "peak_rss_mb": r["peak_rss_mb"],
        "load_s": r["load_s"],
        "load_avg": r["load_avg"],
    }


# (name, numerator, denominator) of the quantized goals' ratios, by (engine, dtype)
RATIOS = [
    ("famous int8 / famous fp32", ("famous", "int8"), ("famous", "fp32")),
    ("famous int8 / llama.cpp q8_0", ("famous", "int8"), ("llama.cpp", "q8_0")),
    ("famous int4 / llama.cpp q4_0", ("famous", "int4"), ("llama.cpp", "q4_0")),
    ("famous q4_0 / llama.cpp q4_0", ("famous", "q4_0"), ("llama.cpp", "q4_0")),
]


def _ratios(shape: str, results: dict) -> dict[str, float]:
    return {
        f"{shape}: {name}": results[a]["decode_tok_s"] / results[b]["decode_tok_s"]
        for name, a, b in RATIOS
        if a in results and b in results
    }


def _print_table(rows: list[dict], ratios: dict[str, float]) -> None:
    head = ["shape", "engine", "dtype", "decode tok/s", "prefill tok/s", "GB/s"]
    head += ["MB/token", "bound tok/s", "% of bound", "decode ×tf", "prefill ×tf"]
    head += ["peak RSS MB", "load s", "load avg"]
    print("\n" + " | ".join(head))
    print(" | ".join("---" for _ in head))
    for r in rows:
        cells = [r["shape"], r["engine"], r["dtype"], f"{r['decode_tok_s']:.1f}"]
        cells += [f"{r['prefill_tok_s']:.1f}", f"{r['bandwidth_gbs']:.1f}"]
        cells += [f"{r['bytes_per_token'] / 1e6:.0f}", f"{r['bound_tok_s']:.1f}"]
        cells += [f"{100 * r['of_bound']:.0f} %"]
        cells += ["-" if r[c] is None else f"{r[c]:.2f}" for c in ("decode_x_tf", "prefill_x_tf")]
        cells += [f"{r['peak_rss_mb']:.0f}", f"{r['load_s']:.1f}", f"{r['load_avg']:.1f}"]
        print(" | ".join(cells))
    for name, value in ratios.items():
        print(f"{name}: {value:.2f}x")


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--child", nargs=5)
    ap.add_argument("--llama-quantize", nargs=3, help=argparse.SUPPRESS)
    ap.add_argument("--quick", action="store_true", help="135M shape only")
    ap.add_argument("--shape", choices=list(SHAPES), help="this shape only")
    ap.add_argument("--prompt", type=int, default=64)
    ap.add_argument("--no-llamacpp", action="store_true")
    rows_help = "float: fp32 / bf16 engines; quant: famous fp32 / int8 / int4 / q4_0, llama.cpp"
    ap.add_argument("--rows", choices=["all", "float", "quant"], default="all", help=rows_help)
    ap.add_argument("--json", type=Path, help="also write the rows and ratios here")
    args = ap.parse_args()
    if args.llama_quantize:
        f16, out, ftype = args.llama_quantize
        _llama_quantize_here(Path(f16), Path(out), ftype)
        return
    if args.child:
        e, p, d, n_prompt, n_new = args.child
        print(json.dumps(child(e, p, d, int(n_prompt), int(n_new))))
        return
    try:
        import llama_cpp  # noqa: F401

        have_cpp = not args.no_llamacpp
    except ImportError:
        have_cpp = False
    bw = [bandwidth_gbs()]  # the latest measurement
    print(f"threads={THREADS}  measured bandwidth (1 GiB fp32 sum): {bw[0]:.1f} GB/s")
    from famous.genai.kernels import cpu_kernels  # bandwidth_gbs put src on the path

    kernels = cpu_kernels()  # its ISA decides famous's bf16 dot product (cpu_decode.c)
    isa = kernels.isa if kernels else "none"
    q8 = kernels.q8_isa if kernels else "none"
    print(f"famous kernels: {isa} build (-march=native), int8 dot products: {q8}")
    print(f"each engine: the best of {REPEATS} runs after a warm-up", flush=True)

    def measured(engine: str, path: Path, dtype: str, new: int) -> dict | None:
        """One engine's run with the bandwidth measured just before and just after it: this
        machine's bandwidth drifts, so each row's bound uses the higher of the two."""
        before, load = bw[0], os.getloadavg()[0]
        r = run_child(engine, path, dtype, args.prompt, new)
        bw[0] = bandwidth_gbs()
        if r:
            r["bandwidth_gbs"] = max(before, bw[0])
            # other processes' load: the 1-minute average, the higher of before and after
            r["load_avg"] = max(load, os.getloadavg()[0])
            print(f"{engine} {dtype}: {r}", flush=True)
        return r

    shapes = [args.shape] if args.shape else ["smollm2-135m"] if args.quick else list(SHAPES)
    floats, quants = args.rows in ("all", "float"), args.rows in ("all", "quant")
    runs = list(FLOAT_ROWS) if floats else []
    runs += [r for r in QUANT_ROWS if quants and r not in runs]
    rows, ratios = [], {}
    with tempfile.TemporaryDirectory(prefix="famous-bench-") as tmp:
        for shape in shapes:
            d = Path(tmp) / shape
            a = time.perf_counter()
            make_checkpoint(shape, d)
            print(f"[{shape}] random checkpoint written in {time.perf_counter() - a:.0f}s")
            big = shape != "smollm2-135m"
            results: dict[tuple[str, str], dict] = {}
            for engine, dtype in runs:
                new = (8 if dtype == "bf16" else 16) if big else 32
                if (r := measured(engine, d, dtype, new)) is not None:
                    results[(engine, dtype)] = r
            if have_cpp:
                gg = Path(tmp) / f"{shape}-f16.gguf"
                write_gguf_f16(d, gg)
                for ftype in (["f16"] if floats else []) + (list(CPP_QUANT) if quants else []):
                    path = gg if ftype == "f16" else Path(tmp) / f"{shape}-{ftype}.gguf"
                    if ftype != "f16":
                        llama_quantize(gg, path, ftype)
                    if (r := measured("llama.cpp", path, ftype, 16 if big else 32)) is not None:
                        results[("llama.cpp", ftype)] = r
                    if ftype != "f16":
                        path.unlink()
                gg.unlink()
            for (engine, dtype), r in results.items():
                ref = results.get(("transformers", {"f16": "bf16"}.get(dtype, dtype)))
                rows.append(_row(shape, engine, dtype, r, ref))
            ratios |= _ratios(shape, results)
            shutil_rm(d)
    _print_table(rows, ratios)
    if args.json:
        report = {"threads": THREADS, "kernels_isa": isa, "rows": rows, "ratios": ratios}
        report["quant_activations"] = os.environ.get("FAMOUS_QUANT_ACTIVATIONS", "int8")
        args.json.write_text(json.dumps(report, indent=2))
        print(f"wrote {args.json}")


def shutil_rm(path: Path) -> None:
    import shutil

    shutil.rmtree(path, ignore_errors=True)


if __name__ == "__main__":
    main()
