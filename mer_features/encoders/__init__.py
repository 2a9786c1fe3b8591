"""Encoders, one small module per family, registered by name and modality.

Importing this package registers the built-in encoders; :func:`create_encoder` builds one from
a spec such as ``egemaps`` or ``hf:/models/hubert-base``.
"""

from mer_features.encoders.base import (Encoded, Encoder, EncoderSpec, OutputSpec,
                                        create_encoder, known_encoders, parse_encoder_spec,
                                        register_encoder)
from mer_features.encoders import (e5, fer, hf_audio, hf_vision, opensmile, text,  # noqa: F401
                                   whisper)  # (registration)

from mer_features.modalities import stages as _stages  # noqa: E402

DEFAULT_ENCODERS = {s.name: s.default_encoder for s in _stages()}
"""Each modality's default encoder, as its stage declares it (:mod:`mer_features.modalities`)."""

__all__ = ["Encoded", "Encoder", "EncoderSpec", "OutputSpec", "create_encoder",
           "known_encoders", "parse_encoder_spec", "register_encoder", "DEFAULT_ENCODERS"]
