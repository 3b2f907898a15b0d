"""The gateway (FastAPI): routes, the scheduler that runs engines, the relay to them. Import
submodules explicitly."""
