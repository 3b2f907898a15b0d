"""A GGUF file seen as a Hub checkpoint: a ``config.json`` dict and float tensors by Hub name.

The loader checks the family's weight map against ``shapes`` (nothing read yet), then
asks ``read`` for each source tensor: its bytes are read, dequantized to float32 and put
back in the Hub's layout (``architectures.Fix``) one tensor at a time.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any

from famous.genai.errors import WeightMapError
from famous.genai.gguf_source.architectures import (
    Architecture,
    Fix,
    architecture,
    hf_config,
    hub_name,
)
from famous.genai.gguf_source.dequant import dequantize
from famous.genai.gguf_source.family_config import LONG, SHORT
from famous.genai.gguf_source.reader import GGUFFile
from famous.genai.weight_map import permute_rope

if TYPE_CHECKING:
    import torch


ROPE_FREQS = "rope_freqs.weight"
# tensors that are RoPE parameters, read into the config, not weights
CONFIG_TENSORS = (ROPE_FREQS, LONG, SHORT)


class GGUFCheckpoint:
    def __init__(self, path: str | Path) -> None:
        self.file = GGUFFile(path)
        self.path = self.file.path
        self.arch: Architecture = architecture(self.file.architecture, self.path.name)
        shapes = {n: t.shape for n, t in self.file.tensors.items()}
        values = {n: self._raw(n).tolist() for n in CONFIG_TENSORS if n in shapes}
        freqs = values.pop(ROPE_FREQS, None)
        self.hf_config: dict[str, Any] = hf_config(
            self.arch, self.file.metadata, shapes, self.path.name, freqs, values
        )
        self._source: dict[str, tuple[str, Fix | None]] = {}
        unknown = []
        for name in self.file.tensors:
            if name in CONFIG_TENSORS:  # read into the config above, not weights
                continue
            mapped = hub_name(self.arch, name)
            if mapped is None:
                unknown.append(name)
                continue
            self._source[mapped[0]] = (name, mapped[1])
        if unknown:
            raise WeightMapError(
                f"{self.path.name}: {len(unknown)} tensor(s) famous has no name for in the "
                f"{self.arch.gguf_name} architecture: {', '.join(unknown[:8])}"
            )

    @property
    def shapes(self) -> dict[str, tuple[int, ...]]:
        """Hub name → shape (torch order), from the tensor directory alone."""
        return {hub: self.file.tensors[g].shape for hub, (g, _) in self._source.items()}

    def tensor_types(self) -> dict[str, str]:
        """GGUF name → GGML type (``Q4_1``, ``F32`` …)."""
        return {n: t.type_name for n, t in self.file.tensors.items()}

    def _raw(self, name: str) -> torch.Tensor:
        t = self.file.tensors[name]
        return dequantize(self.file.read(name), t.ggml_type, t.shape, name)

    def read(self, hub: str) -> torch.Tensor:
        """The float32 tensor the Hub checkpoint would hold under ``hub``."""
        name, fix = self._source[hub]
        value = self._raw(name)
        cfg = self.hf_config
        if fix == "unpermute_q":
            value = permute_rope(value, cfg["num_attention_heads"], cfg["head_dim"])
        elif fix == "unpermute_k":
            value = permute_rope(value, cfg["num_key_value_heads"], cfg["head_dim"])
        elif fix == "minus_one":
            value = value - 1.0
        return value
