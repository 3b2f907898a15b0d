"""Declarative weight maps: ``Rule(target ← sources, transform)`` from a checkpoint's tensor
names to famous's parameters. A family declares its map; ``famous.genai.loader`` applies it.
torch is only needed by ``apply``, which the loader calls with tensors."""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    import torch

Shape = tuple[int, ...]


# ------------------------------------------------------------------------------ transforms


@dataclass(frozen=True)
class Identity:
    def source_shapes(self, target: Shape, n: int) -> list[Shape]:
        return [target]

    def apply(self, tensors: Sequence[torch.Tensor]) -> torch.Tensor:
        return tensors[0]


@dataclass(frozen=True)
class Fuse:
    """Concatenate the sources along ``dim`` (q, k, v → qkv; gate, up → gate_up)."""

    dim: int
    sizes: tuple[int, ...]

    def source_shapes(self, target: Shape, n: int) -> list[Shape]:
        return [tuple(s if i == self.dim else d for i, d in enumerate(target)) for s in self.sizes]

    def apply(self, tensors: Sequence[torch.Tensor]) -> torch.Tensor:
        import torch

        return torch.cat(list(tensors), dim=self.dim)


@dataclass(frozen=True)
class Split:
    """Take part ``index`` of one source split along ``dim`` into ``sizes``."""

    dim: int
    sizes: tuple[int, ...]
    index: int

    def source_shapes(self, target: Shape, n: int) -> list[Shape]:
        return [tuple(sum(self.sizes) if i == self.dim else d for i, d in enumerate(target))]

    def apply(self, tensors: Sequence[torch.Tensor]) -> torch.Tensor:
        return tensors[0].split(list(self.sizes), dim=self.dim)[self.index].contiguous()


@dataclass(frozen=True)
class Stack:
    """Per-expert tensors → one stacked [num_experts, …] tensor (mixture-of-experts weights).

    The sources come in runs, one run per expert; a run of several is first concatenated on
    its dim 0 with ``sizes`` rows each ((gate_e, up_e) → gate_up_e), then the runs are
    stacked on a new leading dim.
    """

    sizes: tuple[int, ...]

    def source_shapes(self, target: Shape, n: int) -> list[Shape]:
        return [(s, *target[2:]) for _ in range(target[0]) for s in self.sizes]

    def apply(self, tensors: Sequence[torch.Tensor]) -> torch.Tensor:
        import torch

        per = len(self.sizes)
        runs = [torch.cat(list(tensors[i : i + per]), dim=0) for i in range(0, len(tensors), per)]
        return torch.stack(runs)


@dataclass(frozen=True)
class FusedExperts:
    """Experts a checkpoint already stores stacked (gpt-oss) → famous's layout.

    ``transposed``: stored [E, in, out] (x @ W), famous keeps [E, out, in]. ``interleaved``:
    gate and up alternate along the output dim (gate_0, up_0, gate_1, …), famous keeps
    [gate; up] halves; applies to a weight or a [E, 2I] bias alike.
    """

    transposed: bool
    interleaved: bool

    def source_shapes(self, target: Shape, n: int) -> list[Shape]:
        if self.transposed:
            return [(*target[:-2], target[-1], target[-2])]
        return [target]

    def apply(self, tensors: Sequence[torch.Tensor]) -> torch.Tensor:
        import torch

        w = tensors[0]
        if self.transposed:
            w = w.transpose(-1, -2)
        if self.interleaved:
            w = torch.cat((w[:, 0::2], w[:, 1::2]), dim=1)
        return w.contiguous()


@dataclass(frozen=True)
class Transpose:
    """A 2-D weight stored as (in, out) (GPT-2 style Conv1D) → nn.Linear's (out, in)."""

    def source_shapes(self, target: Shape, n: int) -> list[Shape]:
        return [tuple(reversed(target))]

    def apply(self, tensors: Sequence[torch.Tensor]) -> torch.Tensor:
        return tensors[0].t().contiguous()


@dataclass(frozen=True)
class PermuteRope:
    """Interleaved-pair RoPE rows (Meta / GGUF layout) ↔ the half-split layout famous uses.

    ``inverse=False``: interleaved → half-split; ``inverse=True``: half-split → interleaved.
    """

    n_heads: int
    head_dim: int
    inverse: bool = False

    def source_shapes(self, target: Shape, n: int) -> list[Shape]:
        return [target]

    def apply(self, tensors: Sequence[torch.Tensor]) -> torch.Tensor:
        return permute_rope(tensors[0], self.n_heads, self.head_dim, self.inverse)


def permute_rope(
    w: torch.Tensor, n_heads: int, head_dim: int, inverse: bool = False
) -> torch.Tensor:
    rest = w.shape[1:]
    if inverse:  # half-split → interleaved pairs
        return (
            w.reshape(n_heads, 2, head_dim // 2, *rest)
            .transpose(1, 2)
            .reshape(w.shape)
            .contiguous()
        )
    return w.reshape(n_heads, head_dim // 2, 2, *rest).transpose(1, 2).reshape(w.shape).contiguous()


Transform = Identity | Fuse | Split | Stack | FusedExperts | Transpose | PermuteRope


@dataclass(frozen=True)
class Rule:
    target: str
    sources: tuple[str, ...]
    transform: Transform = field(default_factory=Identity)


@dataclass(frozen=True)
class WeightMap:
    rules: tuple[Rule, ...]
    ignore: tuple[str, ...] = ()  # regexes of checkpoint tensors that are safe to skip

    def ignored(self, name: str) -> bool:
        return any(re.search(p, name) for p in self.ignore)
