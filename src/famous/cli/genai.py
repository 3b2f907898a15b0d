"""``famous genai generate DIR PROMPT``, ``famous genai embed DIR TEXT…`` and ``famous verify DIR``
(DIR: a Hub model folder, or for generate / verify also a GGUF file).

Only typer at module level: torch and the model code load inside the commands.
"""

from __future__ import annotations

import sys
from pathlib import Path

import typer

from famous.cli.options import FormatOption
from famous.cli.render import OutputFormat, emit, fail, print_fields

genai_app = typer.Typer(
    name="genai",
    help="Build and run models with famous's own PyTorch engine.",
    no_args_is_help=True,
)


@genai_app.command("generate")
def generate(
    model_dir: Path = typer.Argument(
        ...,
        help="Model directory (config.json, safetensors, tokenizer.json) or a GGUF file.",
    ),
    prompt: str = typer.Argument(..., help="Prompt text."),
    max_tokens: int = typer.Option(128, "--max-tokens", "-n", help="Most new tokens."),
    temperature: float = typer.Option(0.0, "--temperature", "-t", help="0 = greedy."),
    top_k: int = typer.Option(0, "--top-k", help="Keep the k most likely tokens (0 = off)."),
    top_p: float = typer.Option(1.0, "--top-p", help="Nucleus sampling mass."),
    min_p: float = typer.Option(
        0.0, "--min-p", help="Drop tokens below min_p × the top probability."
    ),
    repetition_penalty: float = typer.Option(1.0, "--repetition-penalty"),
    seed: int | None = typer.Option(None, "--seed", help="Make sampling reproducible."),
    stop: list[str] = typer.Option([], "--stop", help="Stop string (repeatable)."),
    chat: bool = typer.Option(
        False, "--chat", help="Wrap the prompt in the model's chat template."
    ),
    dtype: str = typer.Option("fp32", "--dtype", help="fp32, bf16 or fp16."),
    threads: int | None = typer.Option(None, "--threads", help="CPU threads (default: torch's)."),
    allow_pickle: bool = typer.Option(False, "--allow-pickle", help="Accept .bin/.pt checkpoints."),
    show_stats: bool = typer.Option(False, "--stats", help="Print tokens/s on stderr at the end."),
) -> None:
    """Generate text, streaming it as it is decoded."""
    from famous.genai.errors import GenAIError
    from famous.genai.pipeline import Pipeline
    from famous.genai.sampling import SamplingParams

    try:
        pipe = Pipeline.from_pretrained(
            model_dir, dtype=dtype, allow_pickle=allow_pickle, threads=threads
        )
        text = pipe.chat_prompt([{"role": "user", "content": prompt}]) if chat else prompt
        params = SamplingParams(
            max_new_tokens=max_tokens,
            temperature=temperature,
            top_k=top_k,
            top_p=top_p,
            min_p=min_p,
            repetition_penalty=repetition_penalty,
            seed=seed,
            stop=list(stop),
        )

        def show(ev) -> None:
            sys.stdout.write(ev.text)
            sys.stdout.flush()

        result = pipe.generate(text, params, on_token=show, chat=chat)
    except (GenAIError, ValueError) as e:  # a chat template that refuses is a GenAIError
        raise fail(str(e)) from e
    sys.stdout.write("\n")
    if show_stats:
        t = result.timings
        dec = result.completion_tokens / t["decode_s"] if t.get("decode_s") else 0.0
        pre = result.prompt_tokens / t["prefill_s"] if t.get("prefill_s") else 0.0
        sys.stderr.write(
            f"prompt {result.prompt_tokens} tok ({pre:.1f} tok/s), "
            f"generated {result.completion_tokens} tok ({dec:.1f} tok/s), "
            f"finish: {result.finish_reason}\n"
        )


@genai_app.command("embed")
def embed(
    model_dir: Path = typer.Argument(
        ..., help="Encoder directory (sentence-transformers layout or a plain BERT)."
    ),
    texts: list[str] = typer.Argument(..., help="Texts to embed."),
    dtype: str = typer.Option("fp32", "--dtype", help="fp32, bf16 or fp16."),
    batch_size: int = typer.Option(32, "--batch-size", min=1, help="Texts per forward pass."),
    threads: int | None = typer.Option(None, "--threads", help="CPU threads (default: torch's)."),
    allow_pickle: bool = typer.Option(False, "--allow-pickle", help="Accept .bin/.pt checkpoints."),
) -> None:
    """Print one embedding vector per text, as a JSON list of lists."""
    import json

    from famous.genai.embedder import Embedder
    from famous.genai.errors import GenAIError

    try:
        if threads:
            import torch

            torch.set_num_threads(threads)
        embedder = Embedder.from_pretrained(model_dir, dtype=dtype, allow_pickle=allow_pickle)
        vectors = embedder.embed(texts, batch_size=batch_size)
    except (GenAIError, ValueError) as e:
        raise fail(str(e)) from e
    sys.stdout.write(json.dumps(vectors.tolist()) + "\n")


def verify_command(
    model_dir: Path = typer.Argument(..., help="Model directory or GGUF file to check."),
    dtype: str = typer.Option("fp32", "--dtype", help="fp32 or bf16."),
    prompt_tokens: int = typer.Option(64, "--prompt-tokens"),
    new_tokens: int = typer.Option(32, "--new-tokens"),
    fmt: OutputFormat = FormatOption,
) -> None:
    """Compare famous with transformers on the same weights: logits and greedy tokens."""
    from famous.genai.errors import GenAIError
    from famous.genai.verify import verify

    try:
        report = verify(model_dir, dtype, prompt_tokens, new_tokens)
    except GenAIError as e:
        raise fail(str(e)) from e
    emit(
        report.to_dict(),
        fmt,
        lambda: print_fields(
            [
                ("model_type", report.model_type),
                ("dtype", report.dtype),
                (
                    "max |logit diff|",
                    f"{report.max_abs_logit_diff:.3g} (tolerance {report.tolerance:g})",
                ),
                (
                    "greedy tokens",
                    f"{'same' if report.greedy_match else 'DIFFER'} ({report.new_tokens})",
                ),
                ("first mismatch", report.first_mismatch),
                ("result", "OK" if report.ok else "FAILED"),
            ]
        ),
    )
    if not report.ok:
        raise typer.Exit(1)


def register(app: typer.Typer) -> None:
    app.add_typer(genai_app, name="genai")
    app.command("verify")(verify_command)
