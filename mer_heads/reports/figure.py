"""The one way a report draws and saves a figure: :func:`figure`; and what every figure says
about what it rests on: :func:`basis` (clips, folds, seeds) and :func:`chance_line`.

A figure of one split with one seed is not a general claim: its title says how many clips,
folds and seeds it rests on, so a reader can weigh it without the report beside it."""

from __future__ import annotations

from collections.abc import Iterator, Sequence
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


def _seeds(seeds: int | Sequence[int]) -> str:
    if isinstance(seeds, int):
        return f"{seeds} seed{'s' if seeds != 1 else ''}"
    seeds = list(seeds)
    if len(seeds) == 1:
        return f"1 seed ({seeds[0]})"
    return f"{len(seeds)} seeds ({seeds[0]}..{seeds[-1]})"


def basis(clips: int, folds: int | None = None, seeds: int | Sequence[int] | None = None,
          *, what: str = "clips") -> str:
    """What a figure rests on, for its title: ``"60 clips, 5 folds x 1 seed (0)"``.

    ``clips``: the clips scored (or described); ``folds``: the cross-validation folds (None:
    none); ``seeds``: a count, or the seeds themselves (None: not seeded)."""
    text = f"{clips} {what}"
    if folds is not None:
        text += f", {folds} folds"
    if seeds is not None:
        text += (" x " if folds is not None else ", ") + _seeds(seeds)
    return text


def chance_weighted_f1(counts: Sequence[int]) -> float:
    """The weighted F1 that guessing with the class frequencies scores on clips with these
    class ``counts``: each class's precision and recall are then its share p, so the weighted
    F1 is the sum of p squared (1/6 for six equal classes; more when one class dominates)."""
    total = float(sum(counts))
    return 0.0 if total <= 0 else float(sum((c / total) ** 2 for c in counts))


def chance_line(ax: Any, value: float, *, vertical: bool = False,
                label: str = "chance (guessing the class frequencies)") -> None:
    """A grey dotted line at ``value`` on the score axis, labelled for the legend."""
    draw = ax.axvline if vertical else ax.axhline
    draw(value, color="grey", ls=":", lw=1.2, label=label)


__all__ = ["basis", "chance_line", "chance_weighted_f1", "figure", "pyplot"]
