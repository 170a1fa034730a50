"""Command line (``peft-ntk-select``): parses arguments and calls the library; never imported by it."""

from __future__ import annotations

import sys
from collections.abc import Sequence


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of ``peft-ntk-select``: imports the command line (torch, transformers and peft take seconds)
    with Ctrl-C during the import turned into one line and exit status 130, as in ``commands.main``, then runs it."""
    try:
        from .commands import main as run
    except KeyboardInterrupt:
        sys.stderr.write("peft-ntk-select: interrupted\n")
        return 130
    return run(argv)


__all__ = ["main"]
