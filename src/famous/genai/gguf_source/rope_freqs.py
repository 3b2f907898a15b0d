"""Llama 3.1-style RoPE scaling recovered from a GGUF's ``rope_freqs`` tensor.

llama.cpp's converter does not write the Hub's ``rope_scaling`` fields for Llama 3.x; it
writes one divisor per rotary frequency instead (1 for short wavelengths, ``factor`` for
long ones, a smooth blend in the band between). famous reads them back as ``rope_scaling``:
``factor`` is the largest divisor; ``low_freq_factor`` / ``high_freq_factor`` are Meta's 1 and
4 (only their ratio to the original context matters, so any pair gives the same model);
the original context is solved from the band's divisors. The result is checked by
recomputing every divisor with famous's own RoPE code — a ``rope_freqs`` that is not Llama 3
scaling is refused rather than approximated.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

from famous.genai.errors import UnsupportedModelError

LOW, HIGH = 1.0, 4.0  # Meta's low_freq_factor / high_freq_factor


def _original_context(divisors: Sequence[float], wavelens: Sequence[float], factor: float) -> float:
    """Within the band, 1/d = (1 − s)/factor + s with s = (orig/λ − low)/(high − low)."""
    band = [(d, w) for d, w in zip(divisors, wavelens, strict=True) if 1 < d < factor * (1 - 1e-6)]
    if band:
        est = []
        for d, w in band:
            s = (1 / d - 1 / factor) / (1 - 1 / factor)
            est.append(w * (LOW + s * (HIGH - LOW)))
        return sum(est) / len(est)
    # no divisor inside the band: any context between the two edges gives the same ones
    kept = [w for d, w in zip(divisors, wavelens, strict=True) if d <= 1 + 1e-6]
    slowed = [w for d, w in zip(divisors, wavelens, strict=True) if d >= factor * (1 - 1e-6)]
    lo = HIGH * max(kept) if kept else 0.0
    hi = LOW * min(slowed) if slowed else 2 * lo
    return (lo + hi) / 2


def llama3_rope_scaling(
    divisors: Sequence[float], theta: float, rotary_dims: int, file: str
) -> dict[str, Any] | None:
    """The Hub ``rope_scaling`` that gives these divisors (None: all are 1)."""
    import torch

    from famous.genai.config import RopeConfig
    from famous.genai.layers.rope import inverse_frequencies

    if len(divisors) != rotary_dims // 2:
        raise UnsupportedModelError(
            f"{file}: rope_freqs has {len(divisors)} values, the RoPE has {rotary_dims // 2} "
            "frequencies"
        )
    factor = max(divisors)
    if factor <= 1 + 1e-6:
        return None
    wavelens = [2 * math.pi * theta ** (2 * i / rotary_dims) for i in range(rotary_dims // 2)]
    orig = round(_original_context(divisors, wavelens, factor))
    scaling = {
        "rope_type": "llama3",
        "factor": float(factor),
        "low_freq_factor": LOW,
        "high_freq_factor": HIGH,
        "original_max_position_embeddings": orig,
    }
    plain = RopeConfig(rope_theta=theta)
    rope = RopeConfig(
        rope_theta=theta,
        rope_type="llama3",
        factor=factor,
        low_freq_factor=LOW,
        high_freq_factor=HIGH,
        original_max_position_embeddings=orig,
    )
    base = inverse_frequencies(plain, rotary_dims, orig)[0]
    scaled = inverse_frequencies(rope, rotary_dims, orig)[0]
    if not torch.allclose(base / scaled, torch.tensor(list(divisors)), rtol=1e-4):
        raise UnsupportedModelError(
            f"{file}: its rope_freqs are not Llama 3 RoPE scaling (the only kind famous reads "
            "back); llama.cpp can serve this model"
        )
    return scaling
