"""Reproducible corruption of decoded media (the MER-NOISE track), applied before the encoder.

:mod:`.spec` holds the registry of noise keys (parse, canonical form, labels, side, sweep
shorthands) and :func:`parse_noise`; each key is registered next to the code that applies it:
:mod:`.audio` (``snr``, ``source``) and :mod:`.video` (``blur``, ``scale``, ``jpeg``).
:mod:`.corrupt` writes corrupted copies of a corpus (``mer-features corrupt``) and
:mod:`.sweep` extracts a store per noise level (``mer-features sweep``).

Each clip's draws depend only on (seed, clip name, spec), never on batch size, workers or
shards; they are recorded in the store (``clips/info['noise']``).
"""

from mer_features.noise.spec import (Level, NoiseKey, NoiseSpec, NoiseSpecError, canonical,
                                     clip_rng, describe_noise, level_help, noise_keys,
                                     parse_level, parse_noise, register_noise_key)
from mer_features.noise import audio as _audio  # registers snr, source (first: canonical order)
from mer_features.noise import video as _video  # registers blur, scale, jpeg
from mer_features.noise.audio import (AUDIO_SUFFIXES, GENERATED_SOURCES, NoiseFolder,
                                      corrupt_audio, is_generated, mix_at_snr, open_folder,
                                      pink_noise, power, snr_db)
from mer_features.noise.video import corrupt_frames, jpeg, pyramid_blur, rescale

__all__ = ["AUDIO_SUFFIXES", "GENERATED_SOURCES", "Level", "NoiseFolder", "NoiseKey",
           "NoiseSpec", "NoiseSpecError", "canonical", "clip_rng", "corrupt_audio",
           "corrupt_frames", "describe_noise", "is_generated", "jpeg", "level_help", "mix_at_snr",
           "noise_keys", "open_folder", "parse_level", "parse_noise", "pink_noise", "power",
           "pyramid_blur", "register_noise_key", "rescale", "snr_db"]
