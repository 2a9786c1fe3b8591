"""The audio modality: the ``audio`` file of a clip, else its video's audio track, decoded at the
encoder's sample rate in worker processes; the ``snr`` and ``source`` noise keys act on it."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from mer_features.corpora.manifest import Clip
from mer_features.modalities.base import Stage, register_stage

PROBE_SECONDS = 1.5
PROBE_CLIPS = 2


@register_stage
class AudioStage(Stage):
    name = "audio"
    default_encoder = "whisper"
    noise_side = "audio"
    batch_sizes = {"cpu": 1, "cpu bf16": 8, "gpu": 32}
    """Measured with HuBERT-base on a 2-core AVX-512/AMX CPU (benchmarks/bench_audio.py): in
    fp32, batches are no faster than one clip at a time (the same matrix-product efficiency,
    larger activations, padding), while in bf16 batches of 8 are about 15% faster (fewer,
    larger bf16 products). GPUs need large batches to be busy."""
    workers_help = "0 for a neural encoder on the CPU, else one per core (at most 8)"

    def __init__(self, options: Any = None, **kwargs: Any):
        super().__init__(options, **kwargs)
        self.babble: list[Any] = []
        self._folder = None

    def columns(self) -> tuple[str, ...]:
        return ("video", "audio")

    def media(self, clip: Clip) -> Path | None:
        return clip.audio_source

    def fingerprint_fields(self) -> dict[str, Any]:
        from mer_features.decode.audio import AUDIO_DECODER

        return {"decoder": AUDIO_DECODER}

    def default_workers(self, encoder: Any) -> int:
        """A neural audio encoder on the CPU already keeps every core busy; decoding beside it
        (a few percent of the work) only takes cores from it, so clips are decoded in this
        process (measured with HuBERT-base on a 2-core CPU, benchmarks/bench_audio.py: about 5%
        faster than two workers). openSMILE runs in the workers; on a GPU they keep it fed."""
        if self.device == "cpu" and not encoder.runs_in_workers:
            return 0
        return super().default_workers(encoder)

    def use(self, clips: Sequence[Clip]) -> None:
        self.babble = [c.audio_source for c in clips]

    def decode(self, clip: Clip, encoder: Any) -> Any:
        from mer_features.decode.audio import decode_audio
        from mer_features.decode.inputs import AudioInput

        rate = encoder.config.sample_rate
        decoded = decode_audio(clip.audio_source, rate)  # within +-1; info["level"] if changed
        waveform = decoded.waveform
        info: dict[str, Any] = dict(decoded.info)
        if self.noise is not None:
            from mer_features.noise.audio import corrupt_audio, open_folder

            if self._folder is None:
                self._folder = open_folder(self.noise)
            others = [p for p in self.babble if p != clip.audio_source]
            waveform, drawn = corrupt_audio(clip.name, waveform, rate, self.noise, self.seed,
                                            babble_sources=others, folder=self._folder)
            info["noise"] = drawn
        return AudioInput(clip.name, waveform, rate, info)

    def length(self, item: Any) -> float:
        return item.duration

    @classmethod
    def probe_size(cls) -> dict[str, Any]:
        return {"clips": PROBE_CLIPS, "seconds": PROBE_SECONDS}

    @classmethod
    def probe_inputs(cls, encoder: Any) -> list[Any]:
        """Two voiced-like clips of unequal lengths (padding is real)."""
        from mer_features.decode.inputs import AudioInput

        rng = np.random.default_rng(0)
        rate = int(getattr(encoder.config, "sample_rate", 16000))
        items = []
        for i in range(PROBE_CLIPS):
            n = int(PROBE_SECONDS * rate) - i * rate // 10
            t = np.arange(n) / rate
            f0 = 110.0 + 40.0 * i
            wave = sum(np.sin(2 * np.pi * f0 * k * t) / k for k in range(1, 6))
            wave = 0.1 * wave * (1 + 0.5 * np.sin(2 * np.pi * 3 * t)) + 0.01 * rng.standard_normal(n)
            items.append(AudioInput(f"probe{i}", wave.astype(np.float32), rate))
        return items
