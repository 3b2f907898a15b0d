"""Text generation end to end: tokenize (or chat-template), prefill, decode with the KV
cache, sample, stop (EOS ids, stop strings, length), stream.

    pipe = Pipeline.from_pretrained("path/to/model", dtype="bf16")
    for event in pipe.stream("Once upon a time", SamplingParams(max_new_tokens=32)):
        print(event.text, end="")
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch

from famous.genai.generation import Stepper
from famous.genai.loader import load_model, resolve_dtype
from famous.genai.sampling import Sampler, SamplingParams
from famous.genai.streaming import IncrementalDecoder, held_back
from famous.genai.tokenizer import Tokenizer


@dataclass
class TokenEvent:
    """One step of a stream: the new text (may be empty while a stop string or a
    multi-byte character is pending) and, on the last event, why generation ended."""

    text: str
    token_id: int | None
    finish_reason: str | None = None  # "stop" | "length" on the last event


@dataclass
class Generation:
    text: str
    token_ids: list[int]
    finish_reason: str
    prompt_tokens: int
    completion_tokens: int
    timings: dict[str, float] = field(default_factory=dict)  # prefill_s, decode_s


class Pipeline:
    def __init__(self, model: Any, tokenizer: Tokenizer, model_id: str = "model") -> None:
        self.model = model
        self.tokenizer = tokenizer
        self.model_id = model_id
        ids = set(model.cfg.eos_token_id)
        if tokenizer.eos_token_id is not None:
            ids.add(tokenizer.eos_token_id)
        self.eos_ids = sorted(ids)

    @classmethod
    def from_pretrained(
        cls,
        model_dir: str | Path,
        dtype: torch.dtype | str | None = None,
        max_seq_len: int = 4096,
        allow_pickle: bool = False,
        threads: int | None = None,
    ) -> Pipeline:
        if threads:
            torch.set_num_threads(threads)
        model = load_model(model_dir, resolve_dtype(dtype), max_seq_len, allow_pickle)
        return cls(model, Tokenizer(model_dir), Path(model_dir).name)

    # ------------------------------------------------------------------ prompts
    def chat_prompt(self, messages: Sequence[dict[str, Any]]) -> str:
        return self.tokenizer.apply_chat_template(messages, add_generation_prompt=True)

    def encode(self, prompt: str | Sequence[int], chat: bool = False) -> list[int]:
        if not isinstance(prompt, str):
            return list(prompt)
        # a rendered chat template already holds its special tokens (bos included)
        return self.tokenizer.encode(prompt, add_special_tokens=not chat)

    # ------------------------------------------------------------------ single prompt
    def stream(
        self, prompt: str | Sequence[int], params: SamplingParams | None = None, chat: bool = False
    ) -> Iterator[TokenEvent]:
        """Yields text deltas as tokens are decoded; the last event has ``finish_reason``."""
        params = params or SamplingParams()
        ids = self.encode(prompt, chat)
        self.last_prompt_tokens = len(ids)
        self.last_timings: dict[str, float] = {}
        capacity = self.model.max_seq_len
        if len(ids) >= capacity:
            raise ValueError(
                f"prompt has {len(ids)} tokens; this engine holds at most {capacity - 1}"
            )
        budget = min(params.max_new_tokens, capacity - len(ids))
        stop_ids = set(params.stop_token_ids) | (set() if params.ignore_eos else set(self.eos_ids))
        sampler = Sampler(params)
        decoder = IncrementalDecoder(self.tokenizer.decode)
        seen = torch.tensor([ids]) if params.repetition_penalty != 1.0 else None
        text, sent = "", 0
        with torch.inference_mode():
            t0 = time.perf_counter()
            stepper = Stepper(self.model)
            logits = stepper.start(ids)
            self.last_timings["prefill_s"] = time.perf_counter() - t0
            t1 = time.perf_counter()
            for step in range(budget):
                tok = int(sampler(logits[:, -1], seen)[0])
                if tok in stop_ids:
                    yield TokenEvent(text[sent:], tok, "stop")
                    return
                text += decoder.push(tok)
                if params.stop:
                    hits = [text.find(s, max(0, sent - len(s))) for s in params.stop]
                    hits = [h for h in hits if h >= 0]
                    if hits:
                        yield TokenEvent(text[sent : min(hits)], tok, "stop")
                        return
                if step == budget - 1:
                    break
                safe = len(text) - held_back(text, params.stop)
                if safe > sent:
                    yield TokenEvent(text[sent:safe], tok)
                    sent = safe
                else:
                    yield TokenEvent("", tok)
                if seen is not None:
                    seen = torch.cat((seen, torch.tensor([[tok]])), dim=1)
                logits = stepper.step(tok)
                self.last_timings["decode_s"] = time.perf_counter() - t1
        yield TokenEvent(text[sent:], tok if budget else None, "length")

    def generate(
        self,
        prompt: str | Sequence[int],
        params: SamplingParams | None = None,
        on_token: Callable[[TokenEvent], None] | None = None,
        chat: bool = False,
    ) -> Generation:
        parts, tokens, finish = [], [], "length"
        for ev in self.stream(prompt, params, chat):
            if on_token is not None:
                on_token(ev)
            parts.append(ev.text)
            if ev.token_id is not None and ev.finish_reason is None:
                tokens.append(ev.token_id)
            if ev.finish_reason:
                finish = ev.finish_reason
                if finish == "length" and ev.token_id is not None:
                    tokens.append(ev.token_id)
                elif finish == "stop" and ev.token_id not in set(self.eos_ids) | set(
                    (params or SamplingParams()).stop_token_ids
                ):
                    tokens.append(ev.token_id)  # a stop string ended inside this token
        return Generation(
            "".join(parts),
            tokens,
            finish,
            self.last_prompt_tokens,
            len(tokens),
            dict(self.last_timings),
        )

    def chat(
        self, messages: Sequence[dict[str, Any]], params: SamplingParams | None = None
    ) -> Generation:
        return self.generate(self.chat_prompt(messages), params, chat=True)

    # ------------------------------------------------------------------ batches
    def generate_batch(
        self, prompts: Sequence[str | Sequence[int]], params: SamplingParams | None = None
    ) -> list[Generation]:
        """Several prompts in one batch (left-padded; each row keeps its own positions).
        Stop strings are applied per row after decoding."""
        params = params or SamplingParams()
        rows = [self.encode(p) for p in prompts]
        b, longest = len(rows), max(len(r) for r in rows)
        budget = min(params.max_new_tokens, self.model.max_seq_len - longest)
        pad_id = self.tokenizer.pad_token_id or 0
        tokens = torch.tensor([[pad_id] * (longest - len(r)) + r for r in rows])
        pad_lens = torch.tensor([longest - len(r) for r in rows])
        stop_ids = set(params.stop_token_ids) | (set() if params.ignore_eos else set(self.eos_ids))
        sampler = Sampler(params)
        out: list[list[int]] = [[] for _ in rows]
        done = [False] * b
        finish = ["length"] * b
        model = self.model
        with torch.inference_mode():
            logits, cache = model(
                tokens,
                torch.arange(longest),
                model.init_cache(b),
                pad_lens=pad_lens,
                end=longest,
                inplace=True,
                last_logits_only=True,
            )
            pos = longest
            for step in range(budget):
                picks = []
                for i in range(b):
                    seen = (
                        torch.tensor([rows[i] + out[i]])
                        if params.repetition_penalty != 1.0
                        else None
                    )
                    picks.append(int(sampler(logits[i : i + 1, -1], seen)[0]))
                for i, tok in enumerate(picks):
                    if done[i]:
                        continue
                    if tok in stop_ids:
                        done[i], finish[i] = True, "stop"
                    else:
                        out[i].append(tok)
                if all(done) or step == budget - 1:
                    break
                logits, cache = model(
                    torch.tensor([[t] for t in picks]),
                    torch.tensor([pos]),
                    cache,
                    pad_lens=pad_lens,
                    end=pos + 1,
                    inplace=True,
                )
                pos += 1
        results = []
        for i, r in enumerate(rows):
            text = self.tokenizer.decode(out[i])
            for s in params.stop:
                if s in text:
                    text, finish[i] = text[: text.index(s)], "stop"
            results.append(Generation(text, out[i], finish[i], len(r), len(out[i])))
        return results
