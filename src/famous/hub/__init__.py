"""The model lifecycle on the Hub side: search, listing, format detection, package
synthesis, verified resumable downloads and the pull service.

Import the submodules (``famous.hub.pull``, ``famous.hub.search``); nothing heavy loads here.
"""

from famous.hub.errors import HubError

__all__ = ["HubError"]
