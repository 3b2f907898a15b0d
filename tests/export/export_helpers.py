"""Helpers of the export tests: tiny random Llama / Qwen2 models saved with ``transformers``
and a byte-level BPE tokenizer trained locally (nothing is downloaded)."""

from __future__ import annotations

import json
from pathlib import Path

import torch

torch.set_num_threads(2)

CORPUS = [
    "The quick brown fox jumps over the lazy dog.",
    "famous builds engines for laptops, phones and servers.",
    "Once upon a time a small model generated text token by token.",
    "Numbers: 0 1 2 3 4 5 6 7 8 9 10 100 1000.",
] * 20
SPECIALS = ["<pad>", "<s>", "</s>"]


def train_tokenizer(out: Path, vocab_size: int = 300) -> int:
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers

    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=vocab_size,
        special_tokens=SPECIALS,
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
    )
    tok.train_from_iterator(CORPUS, trainer)
    out.mkdir(parents=True, exist_ok=True)
    tok.save(str(out / "tokenizer.json"))
    (out / "tokenizer_config.json").write_text(
        json.dumps({"bos_token": "<s>", "eos_token": "</s>", "pad_token": "<pad>"})
    )
    return tok.get_vocab_size()


def make_model(kind: str, out: Path, seed: int = 0) -> Path:
    """A two-layer random model of family ``kind`` (famous's fake config) + tokenizer."""
    from transformers import AutoConfig, AutoModelForCausalLM

    from famous.genai.models import fake_hf_config

    vocab = train_tokenizer(out)
    cfg = fake_hf_config(kind)
    # eos outside the vocabulary the random model favours: greedy runs the full length
    cfg.update(vocab_size=vocab, bos_token_id=1, eos_token_id=2, pad_token_id=0)
    cfg["initializer_range"] = 0.2  # varied greedy tokens (0.02 repeats one token)
    torch.manual_seed(seed)
    model = AutoModelForCausalLM.from_config(AutoConfig.for_model(**cfg)).eval()
    model.save_pretrained(out)
    return out


def load(model_dir: Path, max_seq_len: int = 64):
    from famous.genai.loader import load_model

    return load_model(model_dir, torch.float32, max_seq_len)


def prompt_ids(n: int, vocab: int = 250, seed: int = 1) -> list[int]:
    g = torch.Generator().manual_seed(seed)
    return [int(t) for t in torch.randint(3, vocab, (n,), generator=g)]
