"""Decoding: manifest rows -> arrays an encoder takes.

:mod:`.audio` (mono float32 at the encoder's rate, with the level rule), :mod:`.video`
(RGB frames sampled in time), :mod:`.faces` (face tracks and aligned crops from the frames),
:mod:`.mtcnn` (the MTCNN detector and every speed-up of it), and :mod:`.inputs`, the types
handed to the encoders (:class:`~.inputs.AudioInput`, :class:`~.inputs.TextInput`,
:class:`~.inputs.FaceInput`).

Importing this package is light (no numpy); the submodules load what they need.
"""

VIDEO_SUFFIXES = frozenset({".mp4", ".m4v", ".mkv", ".avi", ".mov", ".webm", ".flv", ".mpg",
                            ".mpeg", ".ts", ".wmv", ".3gp"})
"""File suffixes taken for video containers (decoded with decord or ffmpeg)."""
