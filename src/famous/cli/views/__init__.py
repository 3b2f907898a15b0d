"""What the read-only commands print, without typer or pydantic on the way.

The Typer commands and the quick dispatcher (``famous.cli.quick``) both call these, so a
command prints the same whichever path ran it.
"""
