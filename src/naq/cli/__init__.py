"""The ``naq`` command line (typer + rich)."""
