"""Streaming text out of a generation, shared by famous's pipeline and its engine workers.

``IncrementalDecoder`` turns a growing token list into text deltas without splitting a UTF-8
character; ``held_back`` says how much trailing text could still start a stop string, and
``StopScanner`` cuts a stream of text pieces at the first stop string. Pure Python: no torch.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field


class IncrementalDecoder:
    """Text of a growing token list, released only once it is stable.

    Decoding a window that starts a few tokens back keeps tokenizers that drop or add
    leading spaces (SentencePiece) right; text ending in U+FFFD (half a UTF-8 character)
    waits for the next token. ``decode`` turns token ids into text, special tokens skipped.
    """

    def __init__(self, decode: Callable[[list[int]], str]) -> None:
        self.decode = decode
        self.ids: list[int] = []
        self.prefix_offset = 0
        self.read_offset = 0

    def push(self, token: int) -> str:
        self.ids.append(token)
        before = self.decode(self.ids[self.prefix_offset : self.read_offset])
        after = self.decode(self.ids[self.prefix_offset :])
        if len(after) > len(before) and not after.endswith("\ufffd"):
            self.prefix_offset = self.read_offset
            self.read_offset = len(self.ids)
            return after[len(before) :]
        return ""

    def flush(self) -> str:
        """Whatever is still held back (a final incomplete character included)."""
        before = self.decode(self.ids[self.prefix_offset : self.read_offset])
        after = self.decode(self.ids[self.prefix_offset :])
        self.prefix_offset = self.read_offset = len(self.ids)
        return after[len(before) :] if len(after) > len(before) else ""


def held_back(text: str, stops: Sequence[str]) -> int:
    """How many trailing characters of ``text`` could still become the start of a stop."""
    keep = 0
    for stop in stops:
        for n in range(min(len(stop) - 1, len(text)), 0, -1):
            if text.endswith(stop[:n]):
                keep = max(keep, n)
                break
    return keep


@dataclass
class StopScanner:
    """Cuts generated text at the first stop sequence, even one split across pieces.

    Text that could still be the start of a stop sequence is held back until the next
    piece shows it is not; ``flush`` releases it at the end.
    """

    stops: tuple[str, ...]
    held: str = ""
    stopped: bool = field(default=False, init=False)

    def feed(self, text: str) -> str:
        if self.stopped or not self.stops:
            return "" if self.stopped else text
        buffer = self.held + text
        cut = min((i for i in (buffer.find(s) for s in self.stops) if i >= 0), default=-1)
        if cut >= 0:
            self.stopped = True
            self.held = ""
            return buffer[:cut]
        keep = held_back(buffer, self.stops)
        self.held = buffer[len(buffer) - keep :] if keep else ""
        return buffer[: len(buffer) - keep]

    def flush(self) -> str:
        out, self.held = ("" if self.stopped else self.held), ""
        return out
