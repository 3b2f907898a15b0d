"""The protocols local clients speak beside OpenAI's chat API (OpenAI Responses, Anthropic
Messages, the Ollama API): each a module that translates its requests onto one OpenAI chat
request (``famous.serve.routes.openai.answer``) and the answer back, streams included,
chunk by chunk as they come."""
