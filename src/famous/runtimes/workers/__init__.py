"""famous's own engine servers, one module each, all on one OpenAI worker app (``openai_app``).

Each is started as ``python -m famous.runtimes.workers.<name>`` by its runtime adapter:
``transformers`` (``model.generate``), ``openvino`` (OpenVINO GenAI), ``native`` (famous's own
``famous.genai`` pipeline over safetensors) and ``edge`` (the pipeline over an ExecuTorch
``.pte`` or LiteRT ``.tflite`` famous built). Workers import ``famous.genai``; genai never
imports them.
"""
