"""famous: silicon-optimized local inference.

The control plane (hardware, manifests, matchmaker, store) is kept light on purpose:
importing ``famous`` never imports torch or an engine.
"""

__version__ = "0.1.0"
