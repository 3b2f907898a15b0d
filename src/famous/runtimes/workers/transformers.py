"""famous's transformers engine: any safetensors causal LM behind OpenAI's HTTP API.

    python -m famous.runtimes.workers.transformers --model DIR --host 127.0.0.1 --port N
        [--served-model-name NAME] [--dtype auto|float32|bfloat16|float16]
        [--device auto|cpu|cuda|mps] [--threads N] [--context-size N] [--allow-pickle]

It serves architectures the native engine lacks. The model loads before the port opens,
so ``GET /health`` answering 200 means it can generate. Remote code is never trusted
(``trust_remote_code=False``); pickle checkpoints are refused unless ``--allow-pickle``.
Generation is ``model.generate`` itself (the reference implementation), streamed token by
token through a ``BaseStreamer`` and stopped early through a ``StoppingCriteria``.
"""

from __future__ import annotations

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

_DTYPES = ("auto", "float32", "bfloat16", "float16")


class TransformersBackend:
    """A causal LM and its tokenizer, loaded once; ``generate`` streams one request."""

    def __init__(
        self,
        model_dir: str | Path,
        *,
        dtype: str = "auto",
        device: str = "auto",
        threads: int | None = None,
        context_size: int | None = None,
        allow_pickle: bool = False,
    ) -> None:
        import torch
        from transformers import AutoModelForCausalLM, AutoTokenizer

        if threads:
            torch.set_num_threads(int(threads))
        self.torch = torch
        self.device = resolve_device(device)
        if dtype not in _DTYPES:
            raise ValueError(f"dtype {dtype!r}: use one of {', '.join(_DTYPES)}")
        if dtype == "auto":
            # bf16 / fp16 matmuls on a CPU are slow or unsupported: CPUs get fp32.
            torch_dtype: Any = torch.float32 if self.device == "cpu" else "auto"
        else:
            torch_dtype = getattr(torch, dtype)
        self.tokenizer = AutoTokenizer.from_pretrained(str(model_dir), trust_remote_code=False)
        self.model = AutoModelForCausalLM.from_pretrained(
            str(model_dir),
            trust_remote_code=False,
            use_safetensors=None if allow_pickle else True,
            dtype=torch_dtype,
        )
        self.model.to(self.device).eval()
        eos = self.model.generation_config.eos_token_id
        if eos is None:
            eos = self.tokenizer.eos_token_id
        self.eos_ids: set[int] = set(eos if isinstance(eos, list) else [] if eos is None else [eos])
        trained = getattr(self.model.config, "max_position_embeddings", None)
        self._context = int(context_size) if context_size else trained

    def context_length(self) -> int | None:
        return self._context

    def chat_prompt(self, messages: list[dict[str, Any]]) -> str:
        if not getattr(self.tokenizer, "chat_template", None):
            raise ValueError("this model has no chat template; use /v1/completions")
        return self.tokenizer.apply_chat_template(
            messages, tokenize=False, add_generation_prompt=True
        )

    def encode(self, prompt: str) -> list[int]:
        # A chat prompt already carries the template's special tokens: add none twice.
        bos = getattr(self.tokenizer, "bos_token", None)
        add_special = not (bos and prompt.startswith(bos))
        return list(self.tokenizer(prompt, add_special_tokens=add_special)["input_ids"])

    def count_tokens(self, prompt: str) -> int:
        return len(self.encode(prompt))

    def generation_config(self, params: GenerationParams) -> Any:
        config = self.model.generation_config.__class__.from_dict(
            self.model.generation_config.to_dict()
        )
        config.max_new_tokens = params.max_tokens
        config.max_length = None
        config.min_new_tokens = None
        config.num_return_sequences = 1
        config.num_beams = 1
        if config.pad_token_id is None:
            config.pad_token_id = self.tokenizer.pad_token_id or next(iter(self.eos_ids), 0)
        if params.greedy:
            config.do_sample = False
            config.temperature = None
            config.top_p = None
            config.top_k = None
        else:
            config.do_sample = True
            config.temperature = params.temperature
            config.top_p = params.top_p
            config.top_k = params.top_k  # 0 disables top-k
        return config

    def generate(self, prompt: str, params: GenerationParams) -> Iterator[Piece]:
        from transformers import StoppingCriteria, StoppingCriteriaList
        from transformers.generation.streamers import BaseStreamer

        torch = self.torch
        tokens: queue.Queue[int | BaseException | None] = queue.Queue()
        cancel = threading.Event()

        class _Streamer(BaseStreamer):
            prompt_seen = False

            def put(self, value: Any) -> None:
                if not self.prompt_seen:  # generate() first hands over the prompt
                    self.prompt_seen = True
                    return
                for token in value.reshape(-1).tolist():
                    tokens.put(int(token))

            def end(self) -> None:
                pass

        class _Cancel(StoppingCriteria):
            def __call__(self, input_ids: Any, scores: Any, **kwargs: Any) -> Any:
                flag = cancel.is_set()
                return torch.full((input_ids.shape[0],), flag, dtype=torch.bool)

        ids = torch.tensor([self.encode(prompt)], dtype=torch.long, device=self.device)
        config = self.generation_config(params)

        def work() -> None:
            try:
                if params.seed is not None:
                    torch.manual_seed(params.seed)
                with torch.inference_mode():
                    self.model.generate(
                        ids,
                        attention_mask=torch.ones_like(ids),
                        generation_config=config,
                        streamer=_Streamer(),
                        stopping_criteria=StoppingCriteriaList([_Cancel()]),
                    )
                tokens.put(None)
            except BaseException as exc:  # surfaced to the request, not lost in a thread
                tokens.put(exc)

        thread = threading.Thread(target=work, name="transformers-generate", daemon=True)
        thread.start()
        decoder = IncrementalDecoder(
            lambda ids: self.tokenizer.decode(
                ids, skip_special_tokens=True, clean_up_tokenization_spaces=False
            )
        )
        yield from pieces_from_queue(
            tokens, decoder, self.eos_ids, params.max_tokens, cancel, thread
        )


def resolve_device(device: str) -> str:
    """``auto``: CUDA (or ROCm) when torch sees one, then Apple's MPS, else the CPU."""
    import torch

    if device != "auto":
        return device
    if torch.cuda.is_available():
        return "cuda"
    mps = getattr(torch.backends, "mps", None)
    if mps is not None and mps.is_available():
        return "mps"
    return "cpu"


def main(argv: list[str] | None = None) -> int:
    parser = worker_parser(
        "python -m famous.runtimes.workers.transformers",
        "famous's OpenAI-compatible server around a transformers causal LM.",
        "model directory (config, safetensors)",
    )
    parser.add_argument("--dtype", default="auto", choices=_DTYPES)
    parser.add_argument("--device", default="auto", help="auto, cpu, cuda, cuda:N or mps")
    parser.add_argument("--threads", type=int, default=None, help="torch CPU threads")
    parser.add_argument("--context-size", type=int, default=None, help="prompt + answer cap")
    parser.add_argument("--allow-pickle", action="store_true", help="accept .bin checkpoints")
    args = parser.parse_args(argv)
    name = args.served_model_name or Path(args.model).resolve().name
    try:
        backend = TransformersBackend(
            args.model,
            dtype=args.dtype,
            device=args.device,
            threads=args.threads,
            context_size=args.context_size,
            allow_pickle=args.allow_pickle,
        )
    except (OSError, ValueError) as exc:
        sys.stderr.write(f"error: cannot load {args.model}: {exc}\n")
        return 2
    return serve_worker(backend, name, args, "famous transformers worker", str(backend.device))


if __name__ == "__main__":
    raise SystemExit(main())
