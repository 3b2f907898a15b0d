"""Fixtures of the genai tests (helpers live in genai_helpers.py)."""

from __future__ import annotations

from pathlib import Path

import pytest
from genai_helpers import save_hf_model, train_tokenizer


@pytest.fixture(scope="session")
def tiny_chat_model(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A tiny Llama with a trained tokenizer: the pipeline, CLI and server tests' model."""
    out = tmp_path_factory.mktemp("tiny-chat")
    vocab = train_tokenizer(out)
    from famous.genai.models import fake_hf_config

    cfg = fake_hf_config("llama")
    cfg.update(vocab_size=vocab, bos_token_id=1, eos_token_id=6, pad_token_id=0)
    save_hf_model(cfg, out)
    return out
