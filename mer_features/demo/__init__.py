"""The synthetic demo corpus, the toolkit's built-in default input: :mod:`.corpus` plans it
and writes the files (:func:`write_demo`), :mod:`.signals` renders what each clip shows,
says and sounds like."""

from mer_features.demo.corpus import (FPS, FRAME_SIZE, MANIFEST_COLUMNS, MAX_SECONDS, MIN_CLIPS,
                                      MIN_SECONDS, SAMPLE_RATE, write_demo)

__all__ = ["FPS", "FRAME_SIZE", "MANIFEST_COLUMNS", "MAX_SECONDS", "MIN_CLIPS", "MIN_SECONDS",
           "SAMPLE_RATE", "write_demo"]
