"""The gateway's routes, one module per area: ``openai`` (the OpenAI API), ``admin`` (what
the CLI calls), ``status`` (health and metrics). A new protocol gets a module here."""
