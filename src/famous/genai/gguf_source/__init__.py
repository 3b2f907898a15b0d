"""A GGUF file as a model source: ``famous.genai.loader.load_model(path.gguf)`` and
``Tokenizer(path.gguf)`` read everything from it.

``reader`` parses the file (header, metadata, tensor directory); ``architectures`` says what
each GGUF architecture is in Hub terms (``config.json`` fields, tensor names, the layout
fixes llama.cpp's converter applied), with ``family_config`` for Gemma 2 / 3's windows and
caps and Phi-3's LongRoPE; ``dequant`` turns GGML blocks into float32;
``checkpoint`` puts the three together as a checkpoint the family weight maps load from;
``vocab`` rebuilds the tokenizer and chat template from ``tokenizer.ggml.*``.
"""
