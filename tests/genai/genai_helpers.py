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
