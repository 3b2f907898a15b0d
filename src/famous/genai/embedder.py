"""Sentence embeddings the way ``sentence-transformers`` computes them, without it.

A sentence-transformers folder is a pipeline in ``modules.json``: a Transformer (the
encoder, its ``sentence_bert_config.json`` gives ``max_seq_length``), a Pooling module
(``1_Pooling/config.json``: CLS / mean / max / mean-sqrt-len, concatenated in that order
when several are on) and optionally Normalize (unit L2 length). ``Embedder`` reads the same
files, so its vectors match the reference; a folder without ``modules.json`` is a plain
encoder and gets mean pooling, as sentence-transformers does for one.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F

from famous.genai.encoder import ENCODER_MODEL_TYPES, BertModel, load_encoder
from famous.genai.errors import CheckpointError, UnsupportedModelError
from famous.genai.hf_config import read_config_json
from famous.genai.tokenizer import Tokenizer

_POOLING_MODES = ("cls_token", "max_tokens", "mean_tokens", "mean_sqrt_len_tokens")


def _read_json(path: Path) -> Any:
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except json.JSONDecodeError as e:
        raise CheckpointError(f"{path}: not valid JSON ({e})") from e


def is_embedding_model(model_dir: str | Path) -> bool:
    """A sentence-transformers folder or a plain encoder (a server then serves embeddings)."""
    d = Path(model_dir)
    if (d / "modules.json").is_file():
        return True
    return read_config_json(d).get("model_type") in ENCODER_MODEL_TYPES


@dataclass(frozen=True)
class Pooling:
    """``1_Pooling/config.json``: which poolings are on (field names as written there)."""

    pooling_mode_cls_token: bool = False
    pooling_mode_max_tokens: bool = False
    pooling_mode_mean_tokens: bool = True
    pooling_mode_mean_sqrt_len_tokens: bool = False

    @classmethod
    def from_file(cls, path: Path) -> Pooling:
        raw = _read_json(path)
        other = [
            k
            for k, v in raw.items()
            if k.startswith("pooling_mode_") and v is True and k[13:] not in _POOLING_MODES
        ]
        if other:
            raise UnsupportedModelError(
                f"{path}: pooling {', '.join(other)} is not supported "
                f"(supported: {', '.join(_POOLING_MODES)})"
            )
        on = {
            f"pooling_mode_{m}": bool(raw.get(f"pooling_mode_{m}", False)) for m in _POOLING_MODES
        }
        if not any(on.values()):
            raise UnsupportedModelError(f"{path}: no pooling mode is switched on")
        return cls(**on)

    def __call__(self, hidden: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        """hidden [B, T, D], mask [B, T] (1 = token) → [B, D × modes on]."""
        m = mask.unsqueeze(-1).to(hidden.dtype)
        parts = []
        if self.pooling_mode_cls_token:
            parts.append(hidden[:, 0])
        if self.pooling_mode_max_tokens:
            parts.append(hidden.masked_fill(m == 0, -1e9).max(dim=1).values)
        if self.pooling_mode_mean_tokens or self.pooling_mode_mean_sqrt_len_tokens:
            total = (hidden * m).sum(dim=1)
            count = m.sum(dim=1).clamp(min=1e-9)
            if self.pooling_mode_mean_tokens:
                parts.append(total / count)
            if self.pooling_mode_mean_sqrt_len_tokens:
                parts.append(total / count.sqrt())
        return torch.cat(parts, dim=1)


@dataclass(frozen=True)
class Modules:
    """What ``modules.json`` asks for: the encoder's folder, the pooling, normalization."""

    encoder_dir: Path
    pooling: Pooling
    normalize: bool

    @classmethod
    def read(cls, model_dir: Path) -> Modules:
        path = model_dir / "modules.json"
        if not path.is_file():  # a plain encoder folder
            return cls(model_dir, Pooling(), False)
        encoder_dir, pooling, normalize = None, None, False
        for entry in _read_json(path):
            kind = str(entry.get("type", "")).rsplit(".", 1)[-1]
            where = model_dir / entry.get("path", "")
            if kind == "Transformer" and encoder_dir is None and pooling is None:
                encoder_dir = where
            elif kind == "Pooling" and encoder_dir is not None and pooling is None:
                pooling = Pooling.from_file(where / "config.json")
            elif kind == "Normalize" and pooling is not None:
                normalize = True
            else:
                raise UnsupportedModelError(
                    f"{path}: module {entry.get('type')!r} at position {entry.get('idx')} is "
                    "not supported (famous runs Transformer → Pooling → optional Normalize)"
                )
        if encoder_dir is None or pooling is None:
            raise UnsupportedModelError(f"{path}: needs a Transformer and a Pooling module")
        return cls(encoder_dir, pooling, normalize)


class _BatchTokenizer(Tokenizer):
    """famous's tokenizer, truncating at ``max_length`` and padding each batch to its
    longest text (tokenizer.json's own padding / truncation settings are replaced)."""

    def __init__(self, model_dir: Path, max_length: int) -> None:
        super().__init__(model_dir)
        self._tok.enable_truncation(max_length)
        pad = self.pad_token or "[PAD]"
        self._tok.enable_padding(pad_id=self.pad_token_id or 0, pad_token=pad)

    def batch(self, texts: Sequence[str]) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """input_ids, attention_mask, token_type_ids: [B, T] each."""
        enc = self._tok.encode_batch(list(texts))
        ids = torch.tensor([e.ids for e in enc], dtype=torch.long)
        mask = torch.tensor([e.attention_mask for e in enc], dtype=torch.long)
        types = torch.tensor([e.type_ids for e in enc], dtype=torch.long)
        return ids, mask, types


class Embedder:
    """Text → sentence vector: tokenizer, BERT encoder, pooling, optional normalization."""

    def __init__(
        self,
        model: BertModel,
        tokenizer: _BatchTokenizer,
        modules: Modules,
        max_seq_length: int,
        do_lower_case: bool = False,
    ) -> None:
        self.model = model
        self.tokenizer = tokenizer
        self.modules = modules
        self.max_seq_length = max_seq_length
        self.do_lower_case = do_lower_case

    @classmethod
    def from_pretrained(
        cls,
        model_dir: str | Path,
        dtype: torch.dtype | str | None = None,
        allow_pickle: bool = False,
        device: str = "cpu",
    ) -> Embedder:
        modules = Modules.read(Path(model_dir))
        d = modules.encoder_dir
        model = load_encoder(d, dtype=dtype, allow_pickle=allow_pickle, device=device)
        st_conf = d / "sentence_bert_config.json"
        st = _read_json(st_conf) if st_conf.is_file() else {}
        max_len = st.get("max_seq_length")
        if max_len is None:  # sentence-transformers' fallback
            tok_conf = d / "tokenizer_config.json"
            limit = _read_json(tok_conf).get("model_max_length") if tok_conf.is_file() else None
            max_len = min(model.cfg.max_position_embeddings, int(limit or 1 << 30))
        max_len = int(max_len)
        tokenizer = _BatchTokenizer(d, max_len)
        return cls(model, tokenizer, modules, max_len, bool(st.get("do_lower_case", False)))

    @property
    def dimension(self) -> int:
        return self.model.cfg.hidden_size * sum(vars(self.modules.pooling).values())

    def token_counts(self, texts: Sequence[str]) -> list[int]:
        """Tokens each text is fed as (after truncation, special tokens included)."""
        _, mask, _ = self.tokenizer.batch(self._prepare(texts))
        return mask.sum(dim=1).tolist()

    def _prepare(self, texts: Sequence[str]) -> list[str]:
        if isinstance(texts, str):
            raise TypeError("embed() takes a list of texts, not one string")
        return [t.lower() for t in texts] if self.do_lower_case else list(texts)

    @torch.inference_mode()
    def embed(self, texts: Sequence[str], batch_size: int = 32) -> torch.Tensor:
        """[len(texts), dimension] float32. Texts are batched by length (less padding)."""
        texts = self._prepare(texts)
        out = torch.empty(len(texts), self.dimension, dtype=torch.float32)
        order = sorted(range(len(texts)), key=lambda i: -len(texts[i]))
        device = next(self.model.parameters()).device
        for start in range(0, len(order), batch_size):
            chunk = order[start : start + batch_size]
            ids, mask, types = (
                t.to(device) for t in self.tokenizer.batch([texts[i] for i in chunk])
            )
            hidden = self.model(ids, mask, types)
            vec = self.modules.pooling(hidden, mask).float()
            if self.modules.normalize:
                vec = F.normalize(vec, p=2, dim=1)
            out[chunk] = vec.cpu()
        return out
