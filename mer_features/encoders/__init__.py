"""Encoders, one small module per family, registered by name and modality.

Importing this package registers the built-in encoders; :func:`create_encoder` builds one from
a spec such as ``egemaps`` or ``hf:/models/hubert-base``.
"""

from mer_features.encoders.base import (Encoded, Encoder, OutputSpec, create_encoder,
                                        known_encoders, register_encoder)
from mer_features.encoders import (e5, fer, hf_audio, hf_vision, opensmile, text,  # noqa: F401
                                   whisper)  # (registration)

DEFAULT_ENCODERS = {"audio": "whisper", "text": "e5", "video": "fer"}

__all__ = ["Encoded", "Encoder", "OutputSpec", "create_encoder", "known_encoders",
           "register_encoder", "DEFAULT_ENCODERS"]
