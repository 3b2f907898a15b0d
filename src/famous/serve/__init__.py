"""The gateway (FastAPI): OpenAI routes, proxy, supervisor. Import submodules explicitly."""
