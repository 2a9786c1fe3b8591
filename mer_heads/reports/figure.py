"""The one way a report draws and saves a figure: :func:`figure`."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from mer_heads.outputs import save_figure


def pyplot() -> Any:
    """matplotlib's pyplot on the Agg backend (files only, no display), imported on first use
    so that reading a report module stays cheap."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


@contextmanager
def figure(path: str | Path, *, layout: bool = True, savefig: dict[str, Any] | None = None,
           **subplots: Any) -> Iterator[tuple[Any, Any]]:
    """``with figure(path, figsize=..., dpi=...) as (fig, axes):`` draw on ``plt.subplots(
    **subplots)``; when the block ends, the figure is laid out (``tight_layout``, unless
    ``layout`` is False: the block did it) and written as a PNG to ``path`` through
    :func:`mer_heads.outputs.save_figure` (``savefig``: its keyword arguments, e.g.
    ``bbox_inches``). It is closed in any case, also when drawing fails (nothing is written
    then)."""
    plt = pyplot()
    fig, axes = plt.subplots(**subplots)
    try:
        yield fig, axes
        if layout:
            fig.tight_layout()
        save_figure(fig, path, **(savefig or {}))
    finally:
        plt.close(fig)


__all__ = ["figure", "pyplot"]
