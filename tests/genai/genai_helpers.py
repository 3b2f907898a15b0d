"""Helpers for the genai tests: random-weight models built with transformers, saved to tmp, and a
tokenizer trained locally with ``tokenizers`` (nothing is ever downloaded)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import torch

torch.set_num_threads(2)


def save_hf_model(hf_config: dict[str, Any], out: Path, seed: int = 0) -> Any:
    """Build a random ``transformers`` model from config.json fields and save_pretrained it."""
    from transformers import AutoConfig, AutoModelForCausalLM

    torch.manual_seed(seed)
    cfg = AutoConfig.for_model(**hf_config)
    model = AutoModelForCausalLM.from_config(cfg).eval()
    model.save_pretrained(out)
    return model


def hf_greedy(model: Any, ids: torch.Tensor, n: int) -> tuple[list[int], list[torch.Tensor]]:
    """transformers' greedy tokens (EOS suppressed: exactly ``n``) and the raw logits
    that chose each."""
    with torch.no_grad():
        out = model.generate(
            ids,
            attention_mask=torch.ones_like(ids),
            max_new_tokens=n,
            min_new_tokens=n,
            do_sample=False,
            output_logits=True,
            return_dict_in_generate=True,
            pad_token_id=0,
        )
    return out.sequences[0, ids.shape[1] :].tolist(), [x[0].float() for x in out.logits]


# bf16 keeps 8 significant bits: rounding to bf16 moves a value by at most this times itself
BF16_U = 2.0**-8


def _rms(t: torch.Tensor) -> float:
    return t.double().pow(2).mean().sqrt().item()


def assert_bf16_as_accurate(
    ours: list[torch.Tensor],
    theirs: list[torch.Tensor],
    reference: list[torch.Tensor],
    *,
    factor: float = 1.5,
    what: str = "values",
) -> None:
    """``ours`` is a bf16 computation of ``reference`` (fp32) at most ``factor`` times less
    accurate than ``theirs``, an independent bf16 computation of the same: the RMS errors
    compare, with a floor of what rounding the reference itself to bf16 costs. Comparing
    with fp32 instead of with the other bf16 result keeps this true on every ISA, where
    the two bf16 results round differently."""
    ref = torch.cat([r.double().reshape(-1) for r in reference])
    err_ours = _rms(torch.cat([o.reshape(-1) for o in ours]).double() - ref)
    err_theirs = _rms(torch.cat([t.reshape(-1) for t in theirs]).double() - ref)
    floor = BF16_U * _rms(ref)
    assert err_ours <= factor * err_theirs + floor, (
        f"{what}: RMS error vs fp32 {err_ours:.3g}, the other bf16 implementation's "
        f"{err_theirs:.3g} (allowed {factor} x that + {floor:.3g})"
    )


def assert_decisive_top1_agree(
    ours: list[torch.Tensor], theirs: list[torch.Tensor], reference: list[torch.Tensor]
) -> int:
    """At every step whose fp32 top-1 leads its runner-up by more than twice what bf16
    error can move a logit (the other bf16 implementation's worst error there, doubled,
    plus the rounding of the logits themselves), ``ours`` picks the fp32 top-1. Near-ties
    are not decisive: which of two almost equal logits bf16 ranks first is noise. Returns
    the number of decisive steps."""
    decisive = 0
    for i, (o, t, r) in enumerate(zip(ours, theirs, reference, strict=True)):
        r = r.double().reshape(-1)
        top2 = r.topk(2).values
        bf16_error = 2 * (t.double().reshape(-1) - r).abs().max() + BF16_U * r.abs().max()
        if top2[0] - top2[1] > 2 * bf16_error:
            decisive += 1
            assert int(o.reshape(-1).argmax()) == int(r.argmax()), (
                f"step {i}: fp32 top-1 {int(r.argmax())} leads by {float(top2[0] - top2[1]):.3g}"
                f" (bf16 error {float(bf16_error):.3g}), ours picks {int(o.reshape(-1).argmax())}"
            )
    return decisive


CORPUS = [
    "The quick brown fox jumps over the lazy dog.",
    "famous serves models on any machine, from a laptop to a server.",
    "Hello world! How are you today? I am fine, thank you.",
    "Once upon a time there was a small model that generated text token by token.",
    "Numbers: 0 1 2 3 4 5 6 7 8 9 10 100 1000.",
    "<|user|> and <|assistant|> take turns in a chat.",
] * 20

CHAT_TEMPLATE = (
    "{{ bos_token }}{% for m in messages %}"
    "{% if m['role'] not in ['system', 'user', 'assistant'] %}"
    "{{ raise_exception('unknown role ' + m['role']) }}{% endif %}"
    "<|{{ m['role'] }}|>{{ m['content'] }}<|end|>{% endfor %}"
    "{% if add_generation_prompt %}<|assistant|>{% endif %}"
)


def train_tokenizer(out: Path, vocab_size: int = 300) -> int:
    """A byte-level BPE tokenizer with special tokens; writes tokenizer.json and
    tokenizer_config.json (with a chat template). Returns the vocabulary size."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers

    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    specials = ["<pad>", "<s>", "</s>", "<|user|>", "<|assistant|>", "<|system|>", "<|end|>"]
    trainer = trainers.BpeTrainer(
        vocab_size=vocab_size,
        special_tokens=specials,
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
    )
    tok.train_from_iterator(CORPUS, trainer)
    out.mkdir(parents=True, exist_ok=True)
    tok.save(str(out / "tokenizer.json"))
    (out / "tokenizer_config.json").write_text(
        json.dumps(
            {
                "bos_token": "<s>",
                "eos_token": "<|end|>",
                "pad_token": "<pad>",
                "add_bos_token": False,
                "chat_template": CHAT_TEMPLATE,
            }
        )
    )
    return tok.get_vocab_size()


def decode_tokens(
    model, ids: torch.Tensor, steps: int, forced: list[int] | None = None
) -> tuple[list[int], list[torch.Tensor], tuple]:
    """Prefill ``ids`` then decode ``steps`` tokens: greedy, or teacher-forced over
    ``forced`` (each step then sees the same history whatever it predicts). Returns the
    tokens, the logits that chose each, and the cache."""
    from famous.genai.kernels.decode import decode as kernel_decode

    t = ids.shape[1]
    with torch.no_grad():
        logits, cache = model(
            ids, torch.arange(t), model.init_cache(1), end=t, inplace=True, last_logits_only=True
        )
        tokens, out = [], []
        for i in range(steps):
            out.append(logits[0, -1].float())
            tok = int(logits[0, -1].argmax()) if forced is None else forced[i]
            tokens.append(tok)
            logits, cache = kernel_decode(
                model, torch.tensor([[tok]]), torch.tensor([t + i]), cache
            )
    return tokens, out, cache
