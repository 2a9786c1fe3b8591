"""What every report command returns: :class:`ReportResult`."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import ClassVar


@dataclass(kw_only=True)
class ReportResult:
    """The outputs of a report written into the folder ``out``: ``STEM.md`` (the table the
    command prints), ``STEM.csv``, ``STEM.json`` and, when the report draws one, ``STEM.png``;
    ``seconds`` it took (None until it is done) and its ``notes``. A report's result subclasses
    it with its own fields (rows, ...) and sets ``stem`` (and ``has_figure``)."""

    stem: ClassVar[str]
    has_figure: ClassVar[bool] = True

    out: Path
    seconds: float | None = None
    notes: list[str] = field(default_factory=list)

    @property
    def markdown_path(self) -> Path:
        return self.out / f"{self.stem}.md"

    @property
    def csv_path(self) -> Path:
        return self.out / f"{self.stem}.csv"

    @property
    def json_path(self) -> Path:
        return self.out / f"{self.stem}.json"

    @property
    def png_path(self) -> Path | None:
        return self.out / f"{self.stem}.png" if self.has_figure else None

    def markdown(self) -> str:
        """The Markdown report (what the command prints)."""
        return self.markdown_path.read_text(encoding="utf-8")


__all__ = ["ReportResult"]
