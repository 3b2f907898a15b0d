"""famous's OpenVINO engine: an OpenVINO IR model behind OpenAI's HTTP API.

    python -m famous.runtimes.workers.openvino --model DIR --host 127.0.0.1 --port N
        [--served-model-name NAME] [--device CPU|GPU|NPU|AUTO] [--context-size N]
        [--cache-dir DIR] [--property KEY=VALUE ...]

``DIR`` is what optimum-intel (or ``famous convert``) writes: ``openvino_model.xml`` (a
stateful LLM), ``openvino_tokenizer.xml`` / ``openvino_detokenizer.xml`` and the HF
configs. Generation is ``openvino_genai.LLMPipeline.generate`` itself; a ``StreamerBase``
receives each token (exact usage counts, end-of-sequence seen) and cancels the generation
when the client has what it asked for. The model compiles for the device before the port
opens, so ``GET /health`` answering 200 means it can generate.
"""

from __future__ import annotations

import argparse
import json
import queue
import sys
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from famous.genai.streaming import IncrementalDecoder
from famous.runtimes.workers.openai_app import (
    GenerationParams,
    Piece,
    pieces_from_queue,
    serve_worker,
    worker_parser,
)


def _eos_ids(model_dir: Path, config: Any) -> set[int]:
    ids: set[int] = set()
    eos = getattr(config, "eos_token_id", -1)
    if isinstance(eos, int) and eos >= 0:
        ids.add(eos)
    ids.update(int(t) for t in (getattr(config, "stop_token_ids", None) or ()))
    generation = model_dir / "generation_config.json"
    if generation.is_file():
        try:
            value = json.loads(generation.read_text()).get("eos_token_id")
        except (OSError, ValueError):
            value = None
        if isinstance(value, int):
            ids.add(value)
        elif isinstance(value, list):
            ids.update(int(v) for v in value)
    return ids


def _context_from_config(model_dir: Path) -> int | None:
    config = model_dir / "config.json"
    try:
        value = json.loads(config.read_text()).get("max_position_embeddings")
    except (OSError, ValueError):
        return None
    return int(value) if isinstance(value, int) else None


class OpenVINOBackend:
    """An ``LLMPipeline`` compiled for one device; ``generate`` streams one request."""

    def __init__(
        self,
        model_dir: str | Path,
        *,
        device: str = "CPU",
        context_size: int | None = None,
        properties: dict[str, Any] | None = None,
    ) -> None:
        import openvino_genai

        self.genai = openvino_genai
        self.model_dir = Path(model_dir)
        self.device = device
        self.pipe = openvino_genai.LLMPipeline(str(self.model_dir), device, **(properties or {}))
        self.tokenizer = self.pipe.get_tokenizer()
        self.base_config = self.pipe.get_generation_config()
        self.eos_ids = _eos_ids(self.model_dir, self.base_config)
        self._context = int(context_size) if context_size else _context_from_config(self.model_dir)

    def context_length(self) -> int | None:
        return self._context

    def chat_prompt(self, messages: list[dict[str, Any]]) -> str:
        return self.tokenizer.apply_chat_template(messages, add_generation_prompt=True)

    def count_tokens(self, prompt: str) -> int:
        encoded = self.tokenizer.encode([prompt])
        return int(encoded.input_ids.get_shape()[-1])

    def generation_config(self, params: GenerationParams) -> Any:
        config = self.pipe.get_generation_config()
        config.max_new_tokens = params.max_tokens
        config.min_new_tokens = 0
        config.num_return_sequences = 1
        config.apply_chat_template = False  # chat prompts arrive already templated
        if params.greedy:
            config.do_sample = False
        else:
            config.do_sample = True
            config.temperature = params.temperature
            config.top_p = params.top_p
            config.top_k = params.top_k if params.top_k > 0 else 2**31 - 1
        if params.seed is not None:
            config.rng_seed = params.seed
        return config

    def generate(self, prompt: str, params: GenerationParams) -> Iterator[Piece]:
        genai = self.genai
        tokens: queue.Queue[int | BaseException | None] = queue.Queue()
        cancel = threading.Event()

        class _Streamer(genai.StreamerBase):
            def write(self, token: Any) -> Any:
                for t in token if isinstance(token, list | tuple) else [token]:
                    tokens.put(int(t))
                if cancel.is_set():
                    return genai.StreamingStatus.CANCEL
                return genai.StreamingStatus.RUNNING

            def end(self) -> None:
                pass

        config = self.generation_config(params)

        def work() -> None:
            try:
                self.pipe.generate(prompt, config, _Streamer())
                tokens.put(None)
            except BaseException as exc:  # surfaced to the request, not lost in a thread
                tokens.put(exc)

        thread = threading.Thread(target=work, name="openvino-generate", daemon=True)
        thread.start()
        decoder = IncrementalDecoder(lambda ids: self.tokenizer.decode(ids, True))
        yield from pieces_from_queue(
            tokens, decoder, self.eos_ids, params.max_tokens, cancel, thread
        )


def _parse_property(text: str) -> tuple[str, Any]:
    key, sep, value = text.partition("=")
    if not sep or not key:
        raise argparse.ArgumentTypeError(f"--property expects KEY=VALUE, got {text!r}")
    try:
        return key, json.loads(value)
    except ValueError:
        return key, value


def main(argv: list[str] | None = None) -> int:
    parser = worker_parser(
        "python -m famous.runtimes.workers.openvino",
        "famous's OpenAI-compatible server around openvino_genai.LLMPipeline.",
        "OpenVINO IR directory",
    )
    parser.add_argument("--device", default="CPU", help="CPU, GPU, GPU.N, NPU or AUTO")
    parser.add_argument("--context-size", type=int, default=None, help="prompt + answer cap")
    parser.add_argument("--cache-dir", default=None, help="compiled-model cache (NPU, GPU)")
    parser.add_argument(
        "--property",
        action="append",
        default=[],
        type=_parse_property,
        help="an OpenVINO device property KEY=VALUE (repeatable)",
    )
    args = parser.parse_args(argv)
    name = args.served_model_name or Path(args.model).resolve().name
    properties = dict(args.property)
    if args.cache_dir:
        properties["CACHE_DIR"] = args.cache_dir
    try:
        backend = OpenVINOBackend(
            args.model, device=args.device, context_size=args.context_size, properties=properties
        )
    except (OSError, RuntimeError, ValueError) as exc:
        sys.stderr.write(f"error: cannot load {args.model} on {args.device}: {exc}\n")
        return 2
    return serve_worker(backend, name, args, "famous openvino worker", args.device)


if __name__ == "__main__":
    raise SystemExit(main())
