"""A matplotlib ``Figure`` for the plots, without pyplot: no backend is chosen and no global state changes."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from .errors import MissingExtraError

if TYPE_CHECKING:
    from matplotlib.figure import Figure


def new_figure(**options: Any) -> Figure:
    """``matplotlib.figure.Figure(**options)``; ``MissingExtraError`` naming the extra when matplotlib is absent."""
    try:
        from matplotlib.figure import Figure
    except ImportError as err:
        raise MissingExtraError("plotting needs matplotlib: pip install 'peft-ntk-select[plot]'") from err
    return Figure(**options)
