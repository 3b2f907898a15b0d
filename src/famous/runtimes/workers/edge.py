"""``python -m famous.runtimes.workers.edge``: serve an ExecuTorch ``.pte`` or a LiteRT
``.tflite`` that famous built, through famous's pipeline, behind the OpenAI routes of the
native worker (``famous.runtimes.workers.native.app_for``).

The artifact's folder holds its ``<stem>.signatures.json`` and the tokenizer files
(``famous build --target executorch|litert`` puts them there).
"""

from __future__ import annotations

import sys
from pathlib import Path

from famous.runtimes.workers.native import app_for
from famous.runtimes.workers.openai_app import serve, worker_parser


def main(argv: list[str] | None = None) -> int:
    ap = worker_parser(
        "python -m famous.runtimes.workers.edge",
        __doc__.split("\n")[0],
        "a .pte or .tflite famous built",
    )
    ap.add_argument("--tokenizer", default=None, help="tokenizer folder (default: the model's)")
    ap.add_argument("--threads", type=int, default=None, help="CPU threads")
    args = ap.parse_args(argv)

    from famous.genai.errors import GenAIError
    from famous.genai.export.programs import signature_pipeline

    model = Path(args.model)
    if model.is_dir():  # a folder holding one artifact
        found = sorted([*model.glob("*.pte"), *model.glob("*.tflite")])
        if len(found) != 1:
            sys.stderr.write(f"error: {model} holds {len(found)} .pte / .tflite files, not 1\n")
            return 2
        model = found[0]
    if args.threads:
        import torch

        torch.set_num_threads(args.threads)
    try:
        pipe = signature_pipeline(model, args.tokenizer or model.parent)
    except (GenAIError, ValueError, OSError, ImportError) as e:
        sys.stderr.write(f"error: {e}\n")
        return 2
    name = args.served_model_name or model.stem
    serve(app_for(pipe, name, title="famous edge server"), args.host, args.port, args.log_level)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
