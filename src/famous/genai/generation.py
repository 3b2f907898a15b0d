"""One sequence through a model step by step: prefill, then one token per call with the
KV cache, re-prefilling where the model's RoPE asks for it (LongRoPE crossing its original
length, as transformers' Phi-3 does). The pipeline and ``famous verify`` both drive it."""

from __future__ import annotations

from typing import Any

import torch

from famous.genai.kernels.decode import decode
from famous.genai.layers.transformer import DecoderModel


class Stepper:
    """``start(ids)`` then ``step(token)``, each returning the logits [1, 1, vocab] that
    choose the next token. Call under ``torch.inference_mode()``."""

    def __init__(self, model: Any) -> None:
        self.model = model
        self.history: list[int] = []
        self.cache: Any = None
        self.restart: int | None = getattr(model, "long_context_from", lambda: None)()

    def start(self, ids: list[int]) -> torch.Tensor:
        self.history = list(ids)
        return self._prefill()

    def step(self, token: int) -> torch.Tensor:
        pos = len(self.history)
        self.history.append(token)
        if pos == self.restart:
            return self._prefill()
        tokens, input_pos = torch.tensor([[token]]), torch.tensor([pos])
        if isinstance(self.model, DecoderModel):
            logits, self.cache = decode(self.model, tokens, input_pos, self.cache)
        else:
            logits, self.cache = self.model(
                tokens, input_pos, self.cache, end=pos + 1, inplace=True
            )
        return logits

    def _prefill(self) -> torch.Tensor:
        n = len(self.history)
        logits, self.cache = self.model(
            torch.tensor([self.history]),
            torch.arange(n),
            self.model.init_cache(1),
            end=n,
            inplace=True,
            last_logits_only=True,
        )
        return logits
