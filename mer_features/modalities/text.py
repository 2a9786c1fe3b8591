"""The text modality: transcripts from a manifest column, tokenised by the encoder; nothing to
decode, so no worker processes. No noise key acts on text."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from mer_features.corpora.manifest import (Clip, Manifest, check_transcripts,
                                           transcript_column_problem)
from mer_features.errors import ParameterError
from mer_features.modalities.base import Precheck, Stage, register_stage
from mer_features.options import option

PROBE_TEXTS = ("I can't believe you did that again, after everything we talked about.",
               "Fine.", "Honestly, this is the best news I've heard all year!",
               "We waited for hours and nobody came to tell us what was going on.")


@dataclass(frozen=True)
class TextOptions:
    """Where the transcripts are; fingerprinted (another column is other input)."""

    text_column: str = option("text", "--text-column",
                              "text: the manifest column holding the transcripts")

    def __post_init__(self) -> None:
        if not isinstance(self.text_column, str) or not self.text_column.strip():
            raise ParameterError(f"`text_column` must name a manifest column; got "
                                 f"{self.text_column!r}.", "text_column")


@register_stage
class TextStage(Stage):
    """Transcripts from the manifest's ``text`` column (or ``text_column``)."""

    name = "text"
    Options = TextOptions
    default_encoder = "e5"
    batch_sizes = {"cpu": 64, "gpu": 256}
    """Text encoders cut their own batches by token count; this bounds the clips per call."""
    workers_help = "none, nothing is decoded; with e5 they are its CPU threads (every core)"
    uses_workers = False  # nothing to decode; tokenising happens in the encoder
    uses_media = False

    @property
    def text_column(self) -> str:
        return self.options.text_column

    def columns(self) -> tuple[str, ...]:
        return (self.text_column,)

    def fingerprint_fields(self) -> dict[str, Any]:
        return {"text_column": self.text_column}

    def column_problem(self, manifest: Manifest) -> str:
        """The transcript column must not be one of the manifest's own columns (names...)."""
        return transcript_column_problem(manifest, self.text_column)

    def check_corpus(self, manifest: Manifest) -> None:
        """On the whole manifest: a shard may hold only empty transcripts."""
        check_transcripts(manifest, self.text_column)

    def input_hashes(self, clips: Sequence[Clip]) -> list[str]:
        from mer_features.fingerprint import text_hash

        return [text_hash(clip.text_for(self.text_column) or "") for clip in clips]

    def precheck(self, clip: Clip) -> Precheck | None:
        if self.text_column in clip.invalid_utf8:
            return Precheck("failed", "decode", f"the transcript in column '{self.text_column}' is "
                            "not valid UTF-8; re-save the manifest as UTF-8")
        text = clip.text_for(self.text_column)
        if text is None or not text.strip():
            return Precheck("empty", "input", "empty transcript")
        return None

    def decode(self, clip: Clip, encoder: Any) -> Any:
        from mer_features.decode.inputs import TextInput

        return TextInput(clip.name, clip.text_for(self.text_column).strip())

    @classmethod
    def probe_size(cls) -> dict[str, Any]:
        return {"texts": len(PROBE_TEXTS)}

    @classmethod
    def probe_inputs(cls, encoder: Any) -> list[Any]:
        from mer_features.decode.inputs import TextInput

        return [TextInput(f"probe{i}", text) for i, text in enumerate(PROBE_TEXTS)]
