"""openSMILE feature sets: eGeMAPSv02 (`egemaps`) and ComParE 2016 (`compare`).

Frames are the set's low-level descriptors (10 ms hop); the utterance vector is the set's
functionals (88 for eGeMAPSv02, 6373 for ComParE). openSMILE runs on the CPU, one clip at a time,
so it runs inside the decoding workers and scales with ``--workers``.

openSMILE's Python wrapper hands the signal to its C core as 16-bit PCM (``x * 32768`` cast to
int16), which wraps anything at or beyond full scale around to the other sign (+1.0 becomes
-32768): a loud clip turns into garbage features. :func:`mer_features.decode.audio.decode_audio`
already keeps every sample within +-1 (and records what it did); this module saturates at the
int16 range once more, so no input, however it was made, can wrap. Version 2 of these encoders
is the first with both guards (version 1 stores may hold wrapped clips).
"""

from __future__ import annotations

import warnings
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from mer_features.decode.inputs import AudioInput
from mer_features.encoders.base import Encoded, Encoder, OutputSpec, register_encoder
from mer_features.errors import ClipError, EncoderError
from mer_features.fingerprint import file_hash

_INT16_TOP = 32767 / 32768
"""The largest sample openSMILE's int16 conversion keeps (1.0 would wrap to -32768)."""

_SETS = {
    # name: (opensmile FeatureSet member, n functionals, n low-level descriptors)
    "eGeMAPSv02": ("eGeMAPSv02", 88, 25),
    "ComParE_2016": ("ComParE_2016", 6373, 65),
}


@dataclass(frozen=True)
class OpenSmileConfig:
    feature_set: str = "eGeMAPSv02"
    sample_rate: int = 16000

    def __post_init__(self) -> None:
        if self.feature_set not in _SETS:
            raise ValueError(f"feature_set must be one of {', '.join(_SETS)}; got '{self.feature_set}'")
        if self.sample_rate < 8000:
            raise ValueError(f"sample_rate must be at least 8000; got {self.sample_rate}")


@dataclass(frozen=True)
class CompareConfig(OpenSmileConfig):
    feature_set: str = "ComParE_2016"


@register_encoder
class EgemapsEncoder(Encoder):
    """openSMILE eGeMAPSv02: 88 functionals per clip, 25 low-level descriptors per 10 ms."""

    name = "egemaps"
    modality = "audio"
    version = "2"
    Config = OpenSmileConfig
    runs_in_workers = True

    def __init__(self, config: OpenSmileConfig):
        super().__init__(config)
        self._smiles: tuple[Any, Any] | None = None

    def _opensmile(self):
        try:
            import opensmile
        except ImportError as e:  # pragma: no cover - installed by make setup
            raise EncoderError("The 'opensmile' package is not installed; run 'make setup'.") from e
        return opensmile

    def weights_identity(self) -> dict[str, Any]:
        opensmile = self._opensmile()
        smile = opensmile.Smile(feature_set=getattr(opensmile.FeatureSet, _SETS[self.config.feature_set][0]))
        return {"package": "opensmile", "version": opensmile.__version__,
                "config_file": smile.config_name, "config_hash": file_hash(smile.config_path)}

    def output_spec(self) -> OutputSpec:
        _, n_functionals, n_lld = _SETS[self.config.feature_set]
        return OutputSpec(utterance_shape=(n_functionals,), frame_dim=n_lld, frame_rate=100.0)

    def preprocessing(self) -> dict[str, Any]:
        return {"sample_rate": self.config.sample_rate, "mono": True}

    def load(self, device: str = "cpu", dtype: str = "fp32") -> None:
        super().load("cpu", "fp32")
        if self._smiles is None:
            opensmile = self._opensmile()
            feature_set = getattr(opensmile.FeatureSet, _SETS[self.config.feature_set][0])
            self._smiles = (
                opensmile.Smile(feature_set=feature_set, feature_level=opensmile.FeatureLevel.Functionals),
                opensmile.Smile(feature_set=feature_set,
                                feature_level=opensmile.FeatureLevel.LowLevelDescriptors),
            )

    def encode_batch(self, items: Sequence[AudioInput]) -> list[Encoded | ClipError]:
        self.load()
        return [self._encode_one(item) for item in items]

    def _encode_one(self, item: AudioInput) -> Encoded | ClipError:
        functionals, lld = self._smiles
        # openSMILE needs a few analysis windows (60 ms for pitch) to produce statistics.
        if item.duration < 0.1:
            return ClipError("encode", f"clip is {item.duration:.3f} s long; {self.name} needs at "
                                       "least 0.1 s of audio")
        waveform = np.clip(item.waveform, -1.0, _INT16_TOP)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", UserWarning)
            try:
                utt = functionals.process_signal(waveform, item.sample_rate)
                frames = lld.process_signal(waveform, item.sample_rate)
            except Exception as e:  # openSMILE raises plain exceptions from its C core
                return ClipError("encode", f"openSMILE failed: {e}")
        utterance = utt.to_numpy(dtype=np.float32).reshape(-1)
        matrix = frames.to_numpy(dtype=np.float32)
        if not (np.isfinite(utterance).all() and np.isfinite(matrix).all()):
            return ClipError("encode", "openSMILE produced non-finite features (the clip is too "
                                       "short or holds no usable signal)")
        starts = frames.index.get_level_values("start").total_seconds().to_numpy()
        ends = frames.index.get_level_values("end").total_seconds().to_numpy()
        return Encoded(utterance=utterance, frames=matrix,
                       frame_times=((starts + ends) / 2).astype(np.float32))


@register_encoder
class CompareEncoder(EgemapsEncoder):
    """openSMILE ComParE 2016: 6373 functionals per clip, 65 low-level descriptors per 10 ms."""

    name = "compare"
    Config = CompareConfig
    float16_safe = False  # spectral variances and energies reach 1e6 and more
