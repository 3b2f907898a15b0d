"""Edge targets (one command): export random Llama / Qwen2 models to torch.export (.pt2),
ExecuTorch (.pte, XNNPACK) and LiteRT (.tflite, XNNPACK) and report, per target: artifact
size, max |Δlogit| vs the eager famous model over every signature, greedy-token agreement,
prefill and decode tokens/s and wall time of the export.

    python benchmarks/edge_targets.py [--shape tiny|small] [--targets pt2,pte,tflite]

LiteRT converts in ``FAMOUS_LITERT_PYTHON`` (litert-torch's own venv) when litert_torch is
not importable here. Nothing is downloaded: models are random, tokenizers trained locally.
"""

from __future__ import annotations

import argparse
import json
import tempfile
import time
from pathlib import Path

import torch

SHAPES = {
    "tiny": {
        "hidden_size": 64,
        "intermediate_size": 128,
        "num_hidden_layers": 2,
        "num_attention_heads": 4,
        "num_key_value_heads": 2,
    },
    "small": {
        "hidden_size": 256,
        "intermediate_size": 768,
        "num_hidden_layers": 4,
        "num_attention_heads": 8,
        "num_key_value_heads": 2,
    },
}


def make_model(kind: str, shape: str, out: Path) -> Path:
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
    from transformers import AutoConfig, AutoModelForCausalLM

    from famous.genai.models import fake_hf_config

    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=1000,
        special_tokens=["<pad>", "<s>", "</s>"],
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
    )
    tok.train_from_iterator(["famous builds engines for small and large machines."] * 50, trainer)
    out.mkdir(parents=True, exist_ok=True)
    tok.save(str(out / "tokenizer.json"))
    (out / "tokenizer_config.json").write_text(json.dumps({"eos_token": "</s>"}))
    cfg = fake_hf_config(kind)
    cfg.update(
        SHAPES[shape],
        vocab_size=tok.get_vocab_size(),
        initializer_range=0.2,
        bos_token_id=1,
        eos_token_id=2,
        pad_token_id=0,
    )
    torch.manual_seed(0)
    AutoModelForCausalLM.from_config(AutoConfig.for_model(**cfg)).eval().save_pretrained(out)
    return out


def measure(backend, eager, meta, model_dir: Path, n_prompt: int, n_new: int) -> dict:
    from famous.genai.export.signatures import SignatureModel
    from famous.genai.pipeline import Pipeline
    from famous.genai.sampling import SamplingParams

    g = torch.Generator().manual_seed(0)
    ids = [int(t) for t in torch.randint(3, meta.vocab_size, (n_prompt,), generator=g)]
    # logits: every prefill signature (padded prompt) and a decode step
    ref, cache = eager(torch.tensor([ids[:6]]), torch.arange(6), eager.init_cache())
    ref_dec, _ = eager(torch.tensor([[9]]), torch.tensor([6]), cache)
    err = 0.0
    for n in meta.prefill_lengths:
        out = backend.run(
            f"prefill_{n}",
            [
                torch.tensor([ids[:6] + [0] * (n - 6)]),
                torch.arange(n),
                torch.tensor([5]),
                *meta.empty_cache(),
            ],
        )
        err = max(err, (out[0][0, 0] - ref[0, 5]).abs().max().item())
    dec = backend.run("decode", [torch.tensor([[9]]), torch.tensor([6]), *out[1:]])
    err = max(err, (dec[0] - ref_dec).abs().max().item())
    params = SamplingParams(max_new_tokens=n_new, ignore_eos=True)

    from famous.genai.tokenizer import Tokenizer

    want = Pipeline(eager, Tokenizer(model_dir))
    got = Pipeline(SignatureModel(backend), Tokenizer(model_dir))
    w = _greedy(want, ids, params)
    t = time.perf_counter()
    gen = _greedy(got, ids, params)
    return {
        "max_abs_logit_err": err,
        "greedy_equal": gen["tokens"] == w["tokens"],
        "prefill_tok_s": round(n_prompt / gen["prefill_s"], 1),
        "decode_tok_s": round((n_new - 1) / gen["decode_s"], 1),
        "eager_decode_tok_s": round((n_new - 1) / w["decode_s"], 1),
        "wall_s": round(time.perf_counter() - t, 2),
    }


def _greedy(pipe, ids, params) -> dict:
    tokens = []
    for ev in pipe.stream(ids, params):
        if ev.token_id is not None:
            tokens.append(ev.token_id)
    return {"tokens": tokens, **pipe.last_timings}


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--shape", default="tiny", choices=sorted(SHAPES))
    ap.add_argument("--targets", default="pt2,pte,tflite")
    ap.add_argument("--families", default="llama,qwen2")
    ap.add_argument("--max-seq-len", type=int, default=256)
    ap.add_argument("--prefill", default="8,64")
    ap.add_argument("--prompt", type=int, default=40)
    ap.add_argument("--new", type=int, default=32)
    ap.add_argument("--threads", type=int, default=1, help="torch threads (eager, .pt2)")
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    from famous.genai.export.programs import open_backend
    from famous.genai.export.signatures import export_signatures
    from famous.genai.loader import load_model

    lengths = [int(x) for x in args.prefill.split(",")]
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        for fam in args.families.split(","):
            d = make_model(fam, args.shape, Path(tmp) / fam)
            eager = load_model(d, "fp32", args.max_seq_len)
            for target in args.targets.split(","):
                path = Path(tmp) / f"{fam}.{target}"
                t0 = time.perf_counter()
                if target == "pt2":
                    export_signatures(load_model(d, "fp32", args.max_seq_len), lengths).save(path)
                elif target == "pte":
                    from famous.genai.export.executorch import export_executorch

                    export_executorch(load_model(d, "fp32", args.max_seq_len), path, lengths)
                else:
                    from famous.genai.export.litert import export_litert

                    export_litert(d, path, lengths, max_seq_len=args.max_seq_len)
                export_s = time.perf_counter() - t0
                backend = open_backend(path)
                row = {
                    "family": fam,
                    "target": target,
                    "shape": args.shape,
                    "size_kib": round(path.stat().st_size / 1024, 1),
                    "export_s": round(export_s, 1),
                    **measure(backend, eager, backend.meta, d, args.prompt, args.new),
                }
                rows.append(row)
                print(json.dumps(row), flush=True)
    cols = list(rows[0])
    print("\n| " + " | ".join(cols) + " |\n|" + "---|" * len(cols))
    for r in rows:
        print("| " + " | ".join(str(r[c]) for c in cols) + " |")


if __name__ == "__main__":
    main()
