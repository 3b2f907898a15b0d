"""Composite-op boundaries: SDPA, RMSNorm and the KV-cache update stay single nodes through
``torch.export`` and change no output."""

from __future__ import annotations

from collections import Counter
from pathlib import Path

import pytest
import torch
from export_helpers import load, prompt_ids

from famous.genai.export.signatures import export_signatures
from famous.genai.ops import (
    composite_ops,
    decompositions,
    has_composite_ops,
    with_composite_ops,
    without_composite_ops,
)


def _op_counts(ep: torch.export.ExportedProgram) -> Counter:
    return Counter(n.target for n in ep.graph.nodes if n.op == "call_function")


def test_eager_outputs_unchanged(tiny_model: Path) -> None:
    ids = torch.tensor([prompt_ids(12)])
    m = load(tiny_model)
    ref, ref_cache = m(ids, torch.arange(12), m.init_cache())
    ref_dec, _ = m(ids[:, :1], torch.tensor([12]), ref_cache)
    kw = {"end": 12, "inplace": True, "last_logits_only": True}
    ref_fast, _ = m(ids, torch.arange(12), m.init_cache(), **kw)
    with_composite_ops(m)
    assert has_composite_ops(m)
    out, cache = m(ids, torch.arange(12), m.init_cache())
    dec, _ = m(ids[:, :1], torch.tensor([12]), cache)
    assert torch.equal(out, ref) and torch.equal(dec, ref_dec)
    # the eager in-place fast path (what Pipeline uses) goes through the mutating op
    c = m.init_cache()
    out2, c2 = m(ids, torch.arange(12), c, **kw)
    assert c2[0][0] is c[0][0] and torch.equal(out2, ref_fast)
    without_composite_ops(m)
    assert not has_composite_ops(m)


def test_exported_graph_has_exactly_the_composite_nodes(tiny_model: Path) -> None:
    m = load(tiny_model)
    n_layers = m.cfg.num_hidden_layers
    prog = export_signatures(m, (8,), composite=True)
    ops = composite_ops()
    for name, ep in prog.programs.items():
        counts = _op_counts(ep)
        assert counts[ops["sdpa"]] == n_layers, name
        assert counts[ops["rms_norm"]] == 2 * n_layers + 1, name  # two per block + final
        assert counts[ops["kv_cache_update"]] == 2 * n_layers, name  # k and v per layer
        # nothing of their insides leaked into the graph
        leaked = {
            torch.ops.aten.scaled_dot_product_attention.default,
            torch.ops.aten.rsqrt.default,
            torch.ops.aten.index_copy.default,
            torch.ops.aten.softmax.int,
        }
        assert not leaked & set(counts), name
    # and the same graphs decompose back to ATen for runtimes without the fused kernels
    flat = prog.programs["decode"].run_decompositions(decompositions())
    assert not set(ops.values()) & set(_op_counts(flat))


@pytest.mark.parametrize("name", ["prefill_8", "decode"])
def test_composite_export_equals_eager(tiny_llama: Path, name: str) -> None:
    from famous.genai.export.signatures import example_inputs

    eager = load(tiny_llama)
    prog = export_signatures(load(tiny_llama), (8,), composite=True)
    args = list(example_inputs(prog.meta, name))
    args[0] = torch.tensor([prompt_ids(args[0].shape[1])])
    got = prog.programs[name].module()(*args)
    from famous.genai.export.signatures import signature_module

    want = signature_module(eager, name)(*args)
    for g, w in zip(got, want, strict=True):
        torch.testing.assert_close(g, w, rtol=0, atol=1e-6)
