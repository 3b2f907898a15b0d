"""The configuration keys each runtime reads from an engine manifest, with what each does.

Plain data, apart from the adapters: ``show-engine`` and ``famous set`` list them without
importing an adapter (and the engine libraries an adapter loads).
"""

from __future__ import annotations

# Every key the llama.cpp engines read from an engine manifest's ``configuration``
# (kebab-case or snake_case; aliases in parentheses are accepted too).
LLAMACPP_KEYS: dict[str, str] = {
    "server": "auto (llama-server when available) | llama-server | llama-cpp-python",
    "llama_server_path": "path of a llama-server binary to use",
    "backend": "llama.cpp build llama-server runs on: cpu | cuda | rocm | vulkan",
    "context_size": "context length in tokens (n-ctx); default: the model's, at most 4096",
    "ctx_size": "alias of context-size",
    "n_ctx": "alias of context-size",
    "threads": "decode threads; default: physical cores (n-threads)",
    "n_threads": "alias of threads",
    "batch_size": "logical batch size for prompt processing (n-batch)",
    "n_batch": "alias of batch-size",
    "ubatch_size": "physical batch size (n-ubatch)",
    "n_ubatch": "alias of ubatch-size",
    "n_gpu_layers": "layers offloaded to the GPU on GPU builds (-1 = all)",
    "flash_attn": "on | off | auto: flash attention (6-17 % faster prompt processing here)",
    "parallel": "llama-server: slots that batch concurrent requests, each with the whole "
    "context (default: as many as 10 % of the memory holds the KV cache of, 1 to 8)",
    "cache_reuse": "llama-server: reuse cached prompt chunks of at least N tokens (--cache-reuse)",
    "draft_model": "llama-server: speculative decoding with this installed GGUF model (a name "
    "famous list shows, or a file path); it must share the model's vocabulary",
    "draft_max": "llama-server: most tokens the draft model proposes at a time (--draft-max)",
    "chat_format": "llama-cpp-python chat format when the GGUF has no chat template",
    "chat_template": "llama-server built-in template name when the GGUF has none",
    "embedding": "serve /v1/embeddings (auto-detected from the GGUF)",
    "pooling": "embedding pooling: mean | cls | last (llama-server)",
    "reranking": "serve /v1/rerank (auto-detected from a GGUF with rank pooling; llama-server)",
    "mmproj": "llama-server: the vision projector (mmproj GGUF) to read images with; default: "
    "the one beside the model's GGUF, if any; none turns vision off",
    "seed": "default sampling seed",
}

AMPERE_KEYS: dict[str, str] = {
    **{k: v for k, v in LLAMACPP_KEYS.items() if k not in ("server", "llama_server_path")},
    "context_size": "alias of ctx-size",
}

NATIVE_KEYS: dict[str, str] = {
    "context_size": "longest sequence the native engine keeps in its KV cache",
    "max_seq_len": "alias of context-size",
    "dtype": "weights and compute dtype: float32, bfloat16 or float16",
    "threads": "torch intra-op threads (default: physical cores)",
    "quantize": "weight quantization applied at load: int8 (per channel) | int4 | q4_0, "
    "from float weights (famous quantize lists the recipes)",
}

EDGE_KEYS: dict[str, str] = {
    "context_size": "KV-cache slots the program was built with (informational)",
    "prefill_lengths": "prefill signatures the program holds (informational)",
    "threads": "CPU threads",
}

OPENVINO_KEYS: dict[str, str] = {
    "device": "CPU (default) | GPU | GPU.N | NPU | AUTO: where OpenVINO compiles the model",
    "context_size": "most tokens (prompt + answer); default: the model's max_position_embeddings",
    "cache_dir": "OpenVINO's compiled-model cache (first NPU / GPU load compiles for minutes)",
    "max_prompt_len": "NPU only: longest prompt the static NPU pipeline is compiled for",
    "min_response_len": "NPU only: answer tokens the NPU pipeline reserves",
    "performance_hint": "LATENCY (default) | THROUGHPUT: OpenVINO's performance hint",
    "inference_num_threads": "CPU threads OpenVINO uses",
}

VLLM_KEYS: dict[str, str] = {
    "max_model_len": "context length vLLM reserves KV cache for (--max-model-len)",
    "context_size": "alias of max-model-len",
    "gpu_memory_utilization": "share of each GPU's memory vLLM may take (0-1, default 0.9)",
    "tensor_parallel_size": "GPUs one model is split over; default: every visible GPU "
    "(the largest power of two of them)",
    "pipeline_parallel_size": "pipeline stages (multi-node through Ray)",
    "dtype": "auto | bfloat16 | float16 | float32",
    "quantization": "awq | gptq | fp8 | … (default: read from the checkpoint)",
    "kv_cache_dtype": "auto | fp8 …: KV cache precision",
    "max_num_seqs": "requests batched together at most",
    "enforce_eager": "true disables CUDA graphs (less memory, slower decode); on the CPU it "
    "skips torch.compile, which doubles startup (famous's CPU default: true)",
    "enable_prefix_caching": "true reuses the KV cache of shared prompt prefixes",
    "seed": "default sampling seed",
    "distributed_executor_backend": "mp | ray: how vLLM starts its workers",
    "device": "cpu: run vLLM's CPU build (dtype auto = bfloat16 only with native CPU bf16, "
    "else float32); unset: the GPUs",
    "kv_cache_space": "GiB of KV cache vLLM on the CPU reserves (VLLM_CPU_KVCACHE_SPACE, "
    "default 1)",
    "tool_call_parser": "hermes | llama3_json | mistral | …: vLLM parses tool calls with it "
    "(--enable-auto-tool-choice)",
}

MLX_KEYS: dict[str, str] = {
    "context_size": "longest answer mlx_lm generates when a request sets no max_tokens",
    "max_tokens": "alias of context-size for mlx_lm's --max-tokens",
    "chat_template": "a chat template to use instead of the tokenizer's",
    "temperature": "default sampling temperature (requests override it)",
    "top_p": "default nucleus sampling top-p",
    "top_k": "default top-k (0 disables)",
    "decode_concurrency": "requests decoded together in one batch (mlx_lm default 32)",
    "prompt_cache_size": "distinct KV caches mlx_lm keeps for prompt reuse",
    "kv_bits": "quantize the KV cache to 4 or 8 bits (disables batching)",
    "log_level": "mlx_lm log level (INFO, WARNING, …)",
}

TRANSFORMERS_KEYS: dict[str, str] = {
    "dtype": "auto (fp32 on CPU, the checkpoint's dtype on a GPU) | float32 | bfloat16 | float16",
    "device": "auto (cuda, then mps, then cpu) | cpu | cuda | cuda:N | mps",
    "threads": "torch CPU threads; default: torch's own choice",
    "context_size": "most tokens (prompt + answer); default: the model's max_position_embeddings",
    "allow_pickle": "accept .bin / .pt checkpoints (pickle can run code; default false)",
}

# Runtime name (an engine manifest's ``runtime``) -> the keys its adapter reads.
RUNTIME_KEYS: dict[str, dict[str, str]] = {
    "llamacpp": LLAMACPP_KEYS,
    "llamacpp-ampere": AMPERE_KEYS,
    "famous-native": NATIVE_KEYS,
    "executorch": EDGE_KEYS,
    "litert": EDGE_KEYS,
    "openvino": OPENVINO_KEYS,
    "vllm": VLLM_KEYS,
    "mlx": MLX_KEYS,
    "transformers": TRANSFORMERS_KEYS,
}
