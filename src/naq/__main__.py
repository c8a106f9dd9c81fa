"""``python -m naq``."""

from .cli.app import main

main()
