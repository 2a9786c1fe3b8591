"""mer_features: batched, fingerprinted feature extraction for multimodal emotion recognition."""

__version__ = "0.1.0"

EMOTIONS = ("neutral", "angry", "happy", "sad", "worried", "surprise")
"""The six MER 2023 discrete classes, in the challenge's order."""
