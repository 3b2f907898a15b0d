"""LiteRT (TFLite): one ``.tflite`` holding every signature (``prefill_N`` …, ``decode``),
converted by ``litert-torch`` and run with ``ai-edge-litert``'s interpreter (XNNPACK
delegate) by famous's pipeline.

The converter (``litert-torch``) pins dependencies famous cannot share (an older pydantic,
jax …), so it usually lives in its own virtual environment. ``export_litert`` converts
in-process when ``litert_torch`` imports here, and otherwise in the interpreter named by
``FAMOUS_LITERT_PYTHON`` (a venv with ``torch`` and ``litert-torch``), which runs this module
as a script with famous's source on its path. The runtime side (``ai-edge-litert``) is
light and installs next to famous.

    python -m venv ~/.famous/venv-litert
    ~/.famous/venv-litert/bin/pip install torch==<famous's torch> litert-torch
    export FAMOUS_LITERT_PYTHON=~/.famous/venv-litert/bin/python
"""

from __future__ import annotations

import argparse
import importlib.util
import os
import re
import subprocess
import sys
from collections.abc import Sequence
from pathlib import Path

from famous.genai.errors import ExporterUnavailable, GenAIError

PYTHON_ENV = "FAMOUS_LITERT_PYTHON"
CONVERTER_HINT = (
    "the LiteRT target converts with litert-torch, which needs its own environment: "
    "famous install-component litert (or python -m venv VENV && VENV/bin/pip install "
    f"torch==<famous's torch> litert-torch, then export {PYTHON_ENV}=VENV/bin/python)"
)
RUNTIME_HINT = "pip install 'famous[litert]'  (or: pip install ai-edge-litert)"


class LiteRTUnavailable(ExporterUnavailable):
    """Neither an in-process ``litert_torch`` nor ``FAMOUS_LITERT_PYTHON`` is available (or
    the ``ai-edge-litert`` runtime is missing)."""


class LiteRTConversionError(GenAIError, RuntimeError):
    """litert-torch failed; the message holds the tail of its log."""


def meta_path(tflite: str | Path) -> Path:
    p = Path(tflite)
    return p.with_name(p.stem + ".signatures.json")


def converter_python() -> str | None:
    """The interpreter that converts: this one if it has litert_torch, else the env var."""
    if importlib.util.find_spec("litert_torch") is not None:
        return sys.executable
    env = os.environ.get(PYTHON_ENV)
    if env and Path(env).expanduser().is_file():
        return str(Path(env).expanduser())
    return None


def converter_available() -> bool:
    return converter_python() is not None


def runtime_available() -> bool:
    return importlib.util.find_spec("ai_edge_litert") is not None


# ------------------------------------------------------------------------------ convert


LITERT_QUANT = ("fp32", "dynamic-int8", "dynamic-int4")  # what the converter script's --quant takes


def _check_quant(quant: str) -> None:
    if quant not in LITERT_QUANT:
        raise GenAIError(
            f"LiteRT quantization {quant!r}: famous converts {', '.join(LITERT_QUANT)}"
        )


def quant_config(quant: str):
    """litert-torch's quantization config for famous's edge recipe ``quant`` (None: fp32).

    ``dynamic-int8`` is litert-torch's dynamic-range recipe: int8 weights per output channel,
    activations quantized at run time by the int8 (hybrid) kernels; ``dynamic-int4`` the same
    recipe with int4 weights in blocks of 32."""
    _check_quant(quant)
    if quant == "fp32":
        return None
    from litert_torch.generative.quantize import quant_attrs, quant_recipes

    if quant == "dynamic-int4":
        dtype, granularity = quant_attrs.Dtype.INT4, quant_attrs.Granularity.BLOCKWISE_32
    else:
        dtype, granularity = quant_attrs.Dtype.INT8, quant_attrs.Granularity.CHANNELWISE
    return quant_recipes.full_dynamic_recipe(weight_dtype=dtype, granularity=granularity)


# litert-torch stores int4 block scales as fp16: the smallest normal fp16 (2^-14) times the
# int4 range (8) gives a block holding this value a positive scale; see lift_zero_blocks
ZERO_BLOCK_FILL = 2.0**-14 * 8


def lift_zero_blocks(model, block: int = 32) -> int:
    """Put ``ZERO_BLOCK_FILL`` in the first entry of every all-zero ``block`` of a 2-D weight
    (e.g. a padding token's embedding row); return how many. litert-torch gives such a block
    int4 scale 0, which XNNPACK refuses to load ("unsupported scale value (0.000000)"). The
    lifted entry (4.9e-4) moves a logit by at most 4.9e-4 × |hidden|: trained weights rarely
    have such blocks (SmolLM2 has none), random checkpoints have their padding row."""
    import torch

    lifted = 0
    with torch.no_grad():
        for p in model.parameters():
            if p.ndim != 2 or p.shape[1] % block:
                continue
            blocks = p.view(p.shape[0], -1, block)
            zero = blocks.abs().amax(-1) == 0
            lifted += int(zero.sum())
            blocks[..., 0][zero] = ZERO_BLOCK_FILL
    return lifted


def convert_model(model, path: str | Path, prefill_lengths: Sequence[int], quant: str = "fp32"):
    """In-process conversion of famous's ``model`` (needs ``litert_torch`` importable)."""
    import litert_torch

    from famous.genai.export.signatures import (
        SignatureMeta,
        check_prefill_lengths,
        example_inputs,
        signature_module,
    )

    lengths = check_prefill_lengths(prefill_lengths, model.max_seq_len)
    model.eval()
    if quant == "dynamic-int4":
        lift_zero_blocks(model, 32)
    meta = SignatureMeta.of(model, lengths, False)
    converter = litert_torch
    for name in meta.signatures:
        converter = converter.signature(
            name, signature_module(model, name), example_inputs(meta, name)
        )
    edge = converter.convert(quant_config=quant_config(quant))
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".part")
    edge.export(str(tmp))
    meta_path(path).write_text(meta.to_json(), encoding="utf-8")
    tmp.replace(path)
    return path


def export_litert(
    model_dir: str | Path,
    path: str | Path,
    prefill_lengths: Sequence[int] = (8, 64),
    *,
    max_seq_len: int = 1024,
    dtype: str = "fp32",
    python: str | None = None,
    timeout: float = 1800,
    quant: str = "fp32",
) -> Path:
    """Convert the checkpoint in ``model_dir`` to ``path`` (.tflite) + its
    ``.signatures.json``, in this interpreter or in ``FAMOUS_LITERT_PYTHON``; ``quant``:
    one of ``LITERT_QUANT``."""
    _check_quant(quant)
    python = python or converter_python()
    if python is None:
        raise LiteRTUnavailable(f"litert-torch is not available: {CONVERTER_HINT}")
    path = Path(path)
    src = str(Path(__file__).resolve().parents[3])  # the folder holding the famous package
    env = dict(os.environ)
    env["PYTHONPATH"] = src + (os.pathsep + env["PYTHONPATH"] if env.get("PYTHONPATH") else "")
    cmd = [
        python,
        "-m",
        "famous.genai.export.litert",
        "--model-dir",
        str(Path(model_dir).resolve()),
        "--out",
        str(path.resolve()),
        "--prefill",
        ",".join(str(int(n)) for n in prefill_lengths),
        "--max-seq-len",
        str(int(max_seq_len)),
        "--dtype",
        dtype,
        "--quant",
        quant,
    ]
    try:
        proc = subprocess.run(
            cmd, env=env, capture_output=True, text=True, timeout=timeout, check=False
        )
    except subprocess.TimeoutExpired as e:
        raise LiteRTConversionError(f"litert-torch did not finish in {timeout:.0f} s") from e
    if proc.returncode != 0 or not path.is_file():
        tail = "\n".join((proc.stderr or proc.stdout).strip().splitlines()[-15:])
        for leftover in (path.with_name(path.name + ".part"), meta_path(path)):
            leftover.unlink(missing_ok=True)
        raise LiteRTConversionError(
            f"litert-torch conversion failed (exit {proc.returncode}, {python}):\n{tail}"
        )
    return path


# ------------------------------------------------------------------------------ run


class LiteRTBackend:
    """Runs a ``.tflite``'s signatures with ``ai_edge_litert``'s interpreter (XNNPACK)."""

    def __init__(self, path: str | Path, meta=None, num_threads: int | None = None) -> None:
        import torch

        from famous.genai.export.signatures import SignatureMeta

        try:
            from ai_edge_litert.interpreter import Interpreter
        except ImportError as e:
            raise LiteRTUnavailable(f"the LiteRT runtime is missing ({e}); {RUNTIME_HINT}") from e
        self.path = Path(path)
        self.meta = meta or SignatureMeta.from_json(
            meta_path(self.path).read_text(encoding="utf-8")
        )
        threads = num_threads or min(4, os.cpu_count() or 1)
        self._interp = Interpreter(model_path=str(self.path), num_threads=threads)
        listed = self._interp.get_signature_list()
        missing = set(self.meta.signatures) - set(listed)
        if missing:
            raise GenAIError(f"{self.path} lacks the signatures {sorted(missing)}")
        self._runners = {n: self._interp.get_signature_runner(n) for n in self.meta.signatures}
        self._inputs = {n: _ordered(listed[n]["inputs"]) for n in self.meta.signatures}
        self._outputs = {n: _ordered(listed[n]["outputs"]) for n in self.meta.signatures}
        self._torch = torch

    def run(self, name: str, inputs: list) -> list:
        import numpy as np

        torch = self._torch
        feed = {}
        for key, t in zip(self._inputs[name], inputs, strict=True):
            a = t.detach().cpu().numpy()
            feed[key] = a.astype(np.int32) if a.dtype == np.int64 else a
        out = self._runners[name](**feed)
        return [torch.from_numpy(np.asarray(out[k])) for k in self._outputs[name]]


def _ordered(names: Sequence[str]) -> list[str]:
    """``args_0, args_1, … args_10`` in numeric order (litert names inputs positionally)."""

    def key(n: str):
        m = re.search(r"(\d+)$", n)
        return (int(m.group(1)) if m else -1, n)

    return sorted(names, key=key)


# ------------------------------------------------------------------------------ script


def _main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="famous: convert a model to LiteRT")
    parser.add_argument("--model-dir", required=True)
    parser.add_argument("--out", required=True)
    parser.add_argument("--prefill", default="8,64")
    parser.add_argument("--max-seq-len", type=int, default=1024)
    parser.add_argument("--dtype", default="fp32")
    parser.add_argument("--quant", default="fp32", choices=LITERT_QUANT)
    args = parser.parse_args(argv)
    import torch

    from famous.genai.loader import load_model

    torch.set_num_threads(max(1, min(4, os.cpu_count() or 1)))
    model = load_model(args.model_dir, args.dtype, args.max_seq_len)
    lengths = [int(x) for x in args.prefill.split(",") if x.strip()]
    convert_model(model, args.out, lengths, args.quant)
    return 0


if __name__ == "__main__":
    sys.exit(_main())
