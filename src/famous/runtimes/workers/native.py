"""The famous-native engine: one safetensors model behind OpenAI's HTTP API.

Run it (the ``famous-native`` runtime adapter launches exactly this)::

    python -m famous.runtimes.workers.native --model DIR [--host 127.0.0.1] [--port 8080]
        [--dtype fp32|bf16|fp16] [--quantize int8|int4|q4_0|RECIPE] [--max-seq-len 4096]
        [--threads N] [--served-model-name NAME] [--allow-pickle]

Lifecycle, for a supervisor:

* The model is loaded **before** the port opens: while loading, connections are refused.
  Once ``GET /health`` answers ``200 {"status": "ok", "model": NAME}`` the engine serves.
* A model that cannot be loaded (unknown ``model_type``, truncated shard, pickle without
  ``--allow-pickle`` …) prints ``error: …`` on stderr and exits with status 2; the port
  never opens.
* SIGINT / SIGTERM stop it cleanly (uvicorn's shutdown).
* An encoder (a sentence-transformers folder or a plain BERT) is served on
  ``/v1/embeddings``; its text routes answer 400.

The routes, request checks, stop sequences and OpenAI JSON / SSE shapes are the workers'
shared layer (``famous.runtimes.workers.openai_app``); this module is the ``Backend`` that puts
famous's own ``Pipeline`` behind it. Beyond OpenAI's fields it honours ``top_k``, ``min_p``
and ``repetition_penalty``. Requests run one at a time (one model, one KV cache). Binds
127.0.0.1 by default; it has no authentication of its own — put the gateway in front.
"""

from __future__ import annotations

import sys
from collections import OrderedDict
from collections.abc import Iterator
from typing import Any

from famous.api_errors import invalid
from famous.genai.sampling import SamplingParams
from famous.runtimes.workers.openai_app import (
    GenerationParams,
    Piece,
    create_app,
    serve,
    worker_parser,
)


class PipelineBackend:
    """famous's ``Pipeline`` (eager, or over exported programs) as an OpenAI worker backend."""

    _REMEMBERED = 64

    def __init__(self, pipeline: Any) -> None:
        self.pipeline = pipeline
        # Chat prompts this backend rendered: they already hold the template's special
        # tokens, so encoding them must not add a BOS of its own.
        self._chat_prompts: OrderedDict[str, None] = OrderedDict()

    def context_length(self) -> int | None:
        return self.pipeline.model.max_seq_len - 1

    def chat_prompt(self, messages: list[dict[str, Any]]) -> str:
        prompt = self.pipeline.chat_prompt(messages)
        self._chat_prompts[prompt] = None
        while len(self._chat_prompts) > self._REMEMBERED:
            self._chat_prompts.popitem(last=False)
        return prompt

    def _is_chat(self, prompt: str) -> bool:
        return prompt in self._chat_prompts

    def count_tokens(self, prompt: str) -> int:
        return len(self.pipeline.encode(prompt, self._is_chat(prompt)))

    def generate(self, prompt: str, params: GenerationParams) -> Iterator[Piece]:
        sampling = SamplingParams(
            max_new_tokens=params.max_tokens,
            temperature=params.temperature,
            top_p=params.top_p,
            top_k=params.top_k,
            min_p=params.min_p,
            repetition_penalty=params.repetition_penalty,
            seed=params.seed,
        )  # stop sequences are cut by the shared layer, across pieces
        for event in self.pipeline.stream(prompt, sampling, chat=self._is_chat(prompt)):
            yield Piece(
                event.text,
                tokens=0 if event.token_id is None else 1,
                finish_reason=event.finish_reason,
            )


class EmbedderBackend:
    """An encoder's ``Embedder`` behind ``/v1/embeddings``; the text routes answer 400.

    Texts longer than the model's ``max_seq_length`` are truncated, as sentence-transformers
    does."""

    def __init__(self, embedder: Any) -> None:
        self.embedder = embedder

    def context_length(self) -> int | None:
        return self.embedder.max_seq_length

    def _only_embeddings(self, *_: Any) -> Any:
        raise invalid(
            "this is an embedding model: it serves /v1/embeddings, not text generation",
            "model",
            "model_not_generative",
        )

    chat_prompt = count_tokens = generate = _only_embeddings

    def embed(self, texts: list[str]) -> tuple[list[list[float]], int]:
        vectors = self.embedder.embed(texts)
        return vectors.tolist(), sum(self.embedder.token_counts(texts))


def app_for(pipeline: Any, model_name: str, title: str = "famous-native") -> Any:
    """The FastAPI app serving ``pipeline`` under ``model_name`` (tests may build one)."""
    return create_app(PipelineBackend(pipeline), model_name, title=title)


def main(argv: list[str] | None = None) -> int:
    ap = worker_parser(
        "python -m famous.runtimes.workers.native",
        __doc__.split("\n")[0],
        "model directory (config.json, safetensors, tokenizer.json)",
    )
    ap.add_argument("--dtype", default="fp32", help="fp32, bf16 or fp16")
    ap.add_argument(
        "--max-seq-len", type=int, default=4096, help="KV cache capacity (prompt + output)"
    )
    ap.add_argument("--threads", type=int, default=None, help="CPU threads for torch")
    ap.add_argument("--allow-pickle", action="store_true", help="accept .bin / .pt checkpoints")
    ap.add_argument(
        "--quantize",
        default=None,
        help="weight quantization recipe applied after loading (int8, int4, q4_0 or a file)",
    )
    args = ap.parse_args(argv)

    from pathlib import Path

    from famous.genai.embedder import Embedder, is_embedding_model
    from famous.genai.errors import GenAIError
    from famous.genai.pipeline import Pipeline

    name = args.served_model_name or Path(args.model).resolve().name
    try:
        if is_embedding_model(args.model):  # an encoder: /v1/embeddings
            if args.threads:
                import torch

                torch.set_num_threads(args.threads)
            embedder = Embedder.from_pretrained(
                args.model, dtype=args.dtype, allow_pickle=args.allow_pickle
            )
            app = create_app(EmbedderBackend(embedder), name, title="famous-native")
        else:
            pipe = Pipeline.from_pretrained(
                args.model,
                dtype=args.dtype,
                max_seq_len=args.max_seq_len,
                allow_pickle=args.allow_pickle,
                threads=args.threads,
            )
            if args.quantize:
                from famous.genai.quantize import get_recipe
                from famous.genai.quantize.modules import apply_recipe

                apply_recipe(pipe.model, get_recipe(args.quantize))
            app = app_for(pipe, name)
    except (GenAIError, ValueError, OSError) as e:
        sys.stderr.write(f"error: {e}\n")
        return 2
    serve(app, args.host, args.port, args.log_level)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
