"""Convert a tiny Hugging Face Llama into the OpenVINO IR that ``openvino_genai`` loads.

optimum-intel (the usual exporter) cannot be installed beside this project's torch and
transformers (its newest release would replace torch 2.13 and transformers 5.23; the old
release pip falls back to imports ``openvino.runtime``, which OpenVINO 2026 removed), so
the test converts with OpenVINO's own tools: ``openvino.convert_model``
on a wrapper that takes the KV cache as explicit tensors, then the make-stateful
transformation (the cache becomes internal state, as LLMPipeline expects), and
``openvino_tokenizers.convert_tokenizer`` for the tokenizer and detokenizer models.
"""

from __future__ import annotations

import shutil
import warnings
from pathlib import Path


def _zero_initial_states(ov_model: object) -> None:
    """Give every cache state an initializer: zeros of [batch, heads, 0, head_dim].

    The CPU plugin needs a ReadValue's first value as a subgraph; the batch comes from
    ``input_ids`` and the sequence length starts at 0.
    """
    import numpy as np
    from openvino import opset13 as ops

    input_ids = next(p for p in ov_model.get_parameters() if "input_ids" in p.output(0).get_names())
    batch = ops.gather(ops.shape_of(input_ids, "i64"), ops.constant([0]), ops.constant(0))
    for op in ov_model.get_ops():
        if op.get_type_name() != "ReadValue":
            continue
        shape = op.get_output_partial_shape(0)
        parts = []
        for axis, dim in enumerate(shape):
            if axis == 0:
                parts.append(batch)
            else:
                size = dim.get_length() if dim.is_static else 0
                parts.append(ops.constant(np.array([size], dtype=np.int64)))
        zero = ops.constant(np.array(0, dtype=np.float32)).output(0)
        init = ops.broadcast(ops.convert(zero, op.get_output_element_type(0)), ops.concat(parts, 0))
        op.set_arguments([init.output(0)])
    ov_model.validate_nodes_and_infer_types()


def convert_llama(hf_dir: Path, out_dir: Path) -> Path:
    """Write ``openvino_model.xml`` + tokenizer IRs + the HF configs into ``out_dir``."""
    import openvino as ov
    import torch
    from openvino._offline_transformations import apply_make_stateful_transformation
    from openvino_tokenizers import convert_tokenizer
    from transformers import AutoModelForCausalLM, AutoTokenizer, DynamicCache
    from transformers.cache_utils import DynamicLayer

    model = AutoModelForCausalLM.from_pretrained(
        hf_dir, dtype=torch.float32, attn_implementation="eager"
    ).eval()
    cfg = model.config
    layers = cfg.num_hidden_layers
    kv_heads = cfg.num_key_value_heads
    head_dim = cfg.hidden_size // cfg.num_attention_heads

    class WithExplicitCache(torch.nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.model = model

        def forward(self, input_ids, attention_mask, position_ids, beam_idx, *past):  # type: ignore[no-untyped-def]
            # Filled by hand: DynamicCache.update would concatenate onto an empty 1-D
            # tensor, which traces into a Concat OpenVINO rejects.
            cache = DynamicCache()
            for i in range(layers):
                layer = DynamicLayer()
                layer.keys = past[2 * i].index_select(0, beam_idx)
                layer.values = past[2 * i + 1].index_select(0, beam_idx)
                layer.dtype, layer.device = layer.keys.dtype, layer.keys.device
                layer.is_initialized = True
                cache.layers.append(layer)
            out = self.model(
                input_ids=input_ids,
                attention_mask=attention_mask,
                position_ids=position_ids,
                past_key_values=cache,
                use_cache=True,
            )
            present = []
            for layer in out.past_key_values.layers:
                present += [layer.keys, layer.values]
            return (out.logits, *present)

    past_len, new_len = 3, 2
    example = {
        "input_ids": torch.ones(1, new_len, dtype=torch.long),
        "attention_mask": torch.ones(1, past_len + new_len, dtype=torch.long),
        "position_ids": torch.arange(past_len, past_len + new_len).unsqueeze(0),
        "beam_idx": torch.zeros(1, dtype=torch.int32),
    }
    past_names = []
    for i in range(layers):
        for kind in ("key", "value"):
            name = f"past_key_values.{i}.{kind}"
            past_names.append(name)
            example[name] = torch.zeros(1, kv_heads, past_len, head_dim)
    shapes = {
        "input_ids": ov.PartialShape([-1, -1]),
        "attention_mask": ov.PartialShape([-1, -1]),
        "position_ids": ov.PartialShape([-1, -1]),
        "beam_idx": ov.PartialShape([-1]),
        **{n: ov.PartialShape([-1, kv_heads, -1, head_dim]) for n in past_names},
    }
    with torch.no_grad(), warnings.catch_warnings():
        warnings.simplefilter("ignore")  # tracer notes on HF's shape checks, known and benign
        ov_model = ov.convert_model(
            WithExplicitCache(),
            example_input=tuple(example.values()),
            input=[shapes[name] for name in example],
        )
    for inp, name in zip(ov_model.inputs, example, strict=True):
        inp.get_tensor().set_names({name})
    outputs = ov_model.outputs
    outputs[0].get_tensor().set_names({"logits"})
    present_names = [n.replace("past_key_values", "present") for n in past_names]
    for out, name in zip(outputs[1:], present_names, strict=True):
        out.get_tensor().set_names({name})
    apply_make_stateful_transformation(ov_model, dict(zip(past_names, present_names, strict=True)))
    _zero_initial_states(ov_model)

    out_dir.mkdir(parents=True, exist_ok=True)
    ov.save_model(ov_model, out_dir / "openvino_model.xml", compress_to_fp16=False)
    hf_tok = AutoTokenizer.from_pretrained(hf_dir)
    tokenizer, detokenizer = convert_tokenizer(hf_tok, with_detokenizer=True)
    ov.save_model(tokenizer, out_dir / "openvino_tokenizer.xml")
    ov.save_model(detokenizer, out_dir / "openvino_detokenizer.xml")
    for name in (
        "config.json",
        "generation_config.json",
        "tokenizer.json",
        "tokenizer_config.json",
        "chat_template.jinja",
    ):
        if (Path(hf_dir) / name).exists():
            shutil.copy(Path(hf_dir) / name, out_dir / name)
    return out_dir
