"""The fixed workload ``famous bench`` puts on one engine server, measured over HTTP.

Every engine famous launches speaks OpenAI's ``/v1/completions``; the workload is the same
for all of them so their figures compare:

1. a short warm-up request (not timed: first-request allocations, lazy kernel loads);
2. prompt processing: a request of ``PROMPT_WORDS`` words and ``max_tokens=1``: prompt
   tokens (the server's own ``usage``) over the request's wall time;
3. one stream: ``max_tokens`` at temperature 0, streamed: time to the first text chunk
   (TTFT), then decode speed = tokens after the first over the time after the first;
4. ``streams`` such streams at once: all their tokens over the wall time of the batch.

Steps 2 and 3 run ``ROUNDS`` times and keep the best figure: on a shared machine the
slowest run measures the neighbours, the fastest the engine.

Each request's prompt starts with its own number, so no server answers from a prompt
cache it filled for an earlier request. Peak memory is the largest resident set of the
engine's process tree, sampled every 50 ms from launch to stop (psutil, else /proc).
"""

from __future__ import annotations

import contextlib
import json
import os
import threading
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any

PROMPT_WORDS = 120
ROUNDS = 2  # prompt processing and the single stream: the best of this many runs
_TEXT = (
    "Local inference engines differ in how they schedule work on the cores of a machine, "
    "how they lay out the weights in memory and how they batch the requests of many users. "
    "A benchmark that is short and fixed lets a person compare them on the same footing."
)


def prompt(number: int, words: int = PROMPT_WORDS) -> str:
    """The workload's prompt: ``words`` words of fixed text, led by the request's number."""
    text = _TEXT.split(" ")
    body = [text[i % len(text)] for i in range(words)]
    return f"Request {number}: " + " ".join(body)


@dataclass(frozen=True)
class StreamResult:
    ttft_s: float  # request sent -> first text chunk
    tokens: int  # completion tokens (usage, else text chunks)
    decode_s: float  # first text chunk -> last one
    wall_s: float


@dataclass(frozen=True)
class WorkloadResult:
    prompt_tokens: int
    pp_tps: float
    ttft_ms: float
    decode_tps: float
    throughput_tps: float


class WorkloadError(RuntimeError):
    """The engine answered the workload with an error or with nothing usable."""


class Workload:
    """The requests of one bench run against one server (``base_url``, served ``model``)."""

    def __init__(
        self,
        base_url: str,
        model: str,
        max_tokens: int,
        adapt: Callable[[str, dict[str, Any]], dict[str, Any]] = lambda _k, b: b,
        timeout: float = 600.0,
    ) -> None:
        import httpx

        self.url = base_url.rstrip("/") + "/v1/completions"
        self.model, self.max_tokens, self.adapt = model, max_tokens, adapt
        self.client = httpx.Client(timeout=timeout, trust_env=False)
        self._numbers = iter(range(1, 1 << 30))
        self._lock = threading.Lock()

    def _body(self, max_tokens: int, stream: bool, words: int = PROMPT_WORDS) -> dict[str, Any]:
        with self._lock:
            number = next(self._numbers)
        body: dict[str, Any] = {
            "model": self.model,
            "prompt": prompt(number, words),
            "max_tokens": max_tokens,
            "temperature": 0,
            "seed": 0,
        }
        if stream:
            body |= {"stream": True, "stream_options": {"include_usage": True}}
        return self.adapt("completions", body)

    def complete(self, max_tokens: int, words: int = PROMPT_WORDS) -> tuple[dict[str, Any], float]:
        """One non-streamed request: its answer and wall time."""
        started = time.perf_counter()
        resp = self.client.post(self.url, json=self._body(max_tokens, False, words))
        elapsed = time.perf_counter() - started
        if resp.status_code != 200:
            raise WorkloadError(f"POST {self.url} answered {resp.status_code}: {resp.text[:300]}")
        return resp.json(), elapsed

    def stream(self) -> StreamResult:
        """One streamed request of ``max_tokens``: when its text came, and how much."""
        started = time.perf_counter()
        first = last = None
        chunks, usage_tokens = 0, None
        with self.client.stream("POST", self.url, json=self._body(self.max_tokens, True)) as resp:
            if resp.status_code != 200:
                raise WorkloadError(
                    f"POST {self.url} (stream) answered {resp.status_code}: "
                    f"{resp.read().decode(errors='replace')[:300]}"
                )
            for line in resp.iter_lines():
                if not line.startswith("data:") or line.strip() == "data: [DONE]":
                    continue
                event = json.loads(line[5:])
                text = "".join(c.get("text") or "" for c in event.get("choices") or [])
                if text:
                    now = time.perf_counter()
                    first = first if first is not None else now
                    last, chunks = now, chunks + 1
                if event.get("usage"):
                    usage_tokens = event["usage"].get("completion_tokens")
        if first is None or last is None:
            raise WorkloadError(f"POST {self.url} streamed no text")
        ended = time.perf_counter()
        return StreamResult(first - started, usage_tokens or chunks, last - first, ended - started)

    def run(self, streams: int, rounds: int = ROUNDS) -> WorkloadResult:
        self.complete(4, words=8)  # warm-up
        pp_tps, prompt_tokens = 0.0, 0
        for _ in range(rounds):
            answer, elapsed = self.complete(1)
            prompt_tokens = int((answer.get("usage") or {}).get("prompt_tokens") or 0)
            if prompt_tokens <= 0:
                raise WorkloadError("the engine reported no usage.prompt_tokens")
            pp_tps = max(pp_tps, prompt_tokens / elapsed)
        singles = [self.stream() for _ in range(rounds)]
        if any(one.tokens < 2 or one.decode_s <= 0 for one in singles):
            raise WorkloadError(
                f"one stream produced {min(o.tokens for o in singles)} token(s): too few to "
                "time decoding"
            )
        started = time.perf_counter()
        with ThreadPoolExecutor(max_workers=streams) as pool:
            results = list(pool.map(lambda _i: self.stream(), range(streams)))
        wall = time.perf_counter() - started
        return WorkloadResult(
            prompt_tokens=prompt_tokens,
            pp_tps=pp_tps,
            ttft_ms=min(one.ttft_s for one in singles) * 1000,
            decode_tps=max((one.tokens - 1) / one.decode_s for one in singles),
            throughput_tps=sum(r.tokens for r in results) / wall,
        )

    def close(self) -> None:
        self.client.close()


def tree_rss(pid: int) -> int:
    """Resident bytes of ``pid`` and all its descendants (0 once it is gone)."""
    try:
        import psutil
    except ImportError:
        return _proc_tree_rss(pid)
    try:
        root = psutil.Process(pid)
        procs = [root, *root.children(recursive=True)]
    except psutil.Error:
        return 0
    total = 0
    for p in procs:
        with contextlib.suppress(psutil.Error):  # a child that just exited
            total += p.memory_info().rss
    return total


def _proc_tree_rss(pid: int) -> int:
    """The same from /proc: VmRSS of ``pid``, then of each child its threads list."""
    total, todo, seen = 0, [pid], set()
    while todo:
        p = todo.pop()
        if p in seen:
            continue
        seen.add(p)
        try:
            status = Path(f"/proc/{p}/status").read_text()
            total += next(
                int(line.split()[1]) * 1024
                for line in status.splitlines()
                if line.startswith("VmRSS:")
            )
            for task in os.listdir(f"/proc/{p}/task"):
                children = Path(f"/proc/{p}/task/{task}/children").read_text().split()
                todo.extend(int(c) for c in children)
        except (OSError, StopIteration, ValueError):
            continue
    return total


class PeakMemory:
    """Samples ``tree_rss(pid)`` in a thread until ``stop``; ``peak_bytes`` is the largest."""

    def __init__(self, pid: int, interval: float = 0.05) -> None:
        self.pid, self.interval, self.peak_bytes = pid, interval, 0
        self._done = threading.Event()
        self._thread = threading.Thread(target=self._sample, daemon=True)
        self._thread.start()

    def _sample(self) -> None:
        while not self._done.is_set():
            self.peak_bytes = max(self.peak_bytes, tree_rss(self.pid))
            self._done.wait(self.interval)

    def stop(self) -> int:
        self._done.set()
        self._thread.join(timeout=5)
        return self.peak_bytes
