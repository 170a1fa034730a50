"""Command line (``peft-ntk-select``): parses arguments and calls the library; never imported by it."""

from .commands import main

__all__ = ["main"]
