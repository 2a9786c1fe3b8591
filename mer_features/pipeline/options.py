"""Every option of an extraction, once: :class:`ExtractOptions` (and :class:`SweepOptions`, what a
sweep adds).

Each field declares its default, its flag and its help (:func:`mer_features.options.option`),
and ``__post_init__`` checks every bound, so an ``ExtractOptions`` that exists is a valid one:
a bad value raises :class:`~mer_features.errors.ParameterError` naming the parameter, before
any file is read. ``mer-features extract`` and ``sweep`` build their options from these fields,
and from the fields of each modality's own options (:class:`~mer_features.modalities.video.
VideoOptions`, :class:`~mer_features.modalities.text.TextOptions`), which ``modality_options``
holds.

:func:`extract_options` makes one from keywords, as :func:`~mer_features.pipeline.extract`
and the command line take them (``fps=2`` or ``video=VideoOptions(fps=2)``).
"""

from __future__ import annotations

import os
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, fields, replace
from pathlib import Path
from typing import Any

from mer_features.corpora.manifest import Manifest
from mer_features.encoders.tuning import IMPLS as COMPUTE_PATHS
from mer_features.errors import EncoderError, ParameterError
from mer_features.modalities import get_stage, known_modalities, stages
from mer_features.options import option

DTYPES = ("fp32", "bf16", "fp16", "auto")
STORAGE_DTYPES = ("float32", "float16")
LAYERS = ("last", "mean-last-4", "all")
MAX_WORKERS = 256
DEVICE_PATTERN = re.compile(r"auto|cpu|cuda(:\d+)?")


def _option_pair(text: str) -> tuple[str, str]:
    """``-o KEY=VALUE`` -> (key, value); text that is not KEY=VALUE is a usage error."""
    import argparse

    key, sep, value = text.partition("=")
    if not sep or not key.strip():
        raise argparse.ArgumentTypeError(f"'{text}' must look like KEY=VALUE, e.g. "
                                         "-o chunk_seconds=20")
    return key.strip(), value


def _collect_pairs(pairs: list[tuple[str, str]]) -> dict[str, str]:
    """The ``-o`` pairs as a dict; a key given twice with two values is refused."""
    options: dict[str, str] = {}
    for key, value in pairs:
        key = key.replace("-", "_")
        if key in options and options[key] != value:
            raise ParameterError(f"Encoder option '{key}' is given twice in `encoder_options` "
                                 f"({options[key]!r} and {value!r}); give it once.",
                                 "encoder_options")
        options[key] = value
    return options


def _encoder_help() -> str:
    from mer_features.encoders import known_encoders

    known = "; ".join(f"{s.name}: {', '.join(known_encoders(s.name))}" for s in stages())
    return f"encoder spec, NAME or NAME:ARG ({known}; see docs/encoders.md)"


def _per_modality(text: Any) -> Any:
    return lambda: "per modality: " + "; ".join(f"{s.name} {text(s)}" for s in stages())


@dataclass(frozen=True)
class ExtractOptions:
    """The options of one extraction (see :func:`~mer_features.pipeline.extract` for what each
    does). ``ExtractOptions(manifest="m.csv", modality="video", seed=3)``; ``replace(options,
    out="b.h5")``. A store's fingerprint depends on ``modality``, ``encoder``, ``layer`` and
    ``encoder_options``, ``modality_options``, ``noise`` and ``seed``, ``dtype`` (where the
    encoder computes in it) and ``storage_dtype``; never on the others."""

    modality: str = option("audio", "--modality", "the input of each clip to encode",
                           choices=known_modalities, required=True)
    manifest: Any = option(None, "--manifest", "manifest CSV", required=True)
    """A path, or a :class:`~mer_features.corpora.manifest.Manifest`."""
    out: str | Path | None = option(
        None, "--out", "store path", default_text="features/<corpus>-<modality>-<encoder>.h5, "
        "the corpus named after the manifest's folder")
    encoder: str | None = option(None, "--encoder", _encoder_help, default_text=_per_modality(
        lambda s: s.default_encoder))
    layer: str | None = option(None, "--layer", "hf encoders: which hidden layers to keep",
                               choices=LAYERS, default_text="the encoder's: mean-last-4; last for Whisper checkpoints")
    encoder_options: Mapping[str, Any] = option(
        flag=("-o", "--option"), help="encoder option, e.g. -o chunk_seconds=20 (repeatable)",
        default_factory=dict, metavar="KEY=VALUE", parse=_option_pair, append=True,
        collect=_collect_pairs, default_text="the encoder's")
    noise: Any = option(None, "--noise", "corrupt the decoded media before the encoder, e.g. "
                        "'snr=5:10,source=pink' or 'blur=1|2|4' (see docs/noise.md); only the "
                        "keys acting on the modality count", metavar="SPEC",
                        default_text="none: clean")
    """A spec text or a :class:`~mer_features.noise.NoiseSpec`; held as a NoiseSpec or None."""
    seed: int = option(0, "--seed", "seed of the per-clip noise draws, >= 0")
    shard: Any = option(None, "--shard", "extract only shard I of N (stable by clip name); "
                        "under torchrun or a SLURM array the shard is taken from the launcher",
                        metavar="I/N", default_text="none: every clip")
    """``"I/N"`` or a :class:`~mer_features.pipeline.distributed.Shard`; held as a Shard."""
    device: str = option("auto", "--device", "auto, cpu, cuda or cuda:N")
    dtype: str = option(
        "fp32", "--dtype", "compute dtype for neural encoders (fp16 needs a GPU; bf16 pays only "
        "with AMX/AVX512-BF16 or a GPU, and warns elsewhere); auto: bf16 where the device "
        "computes it natively, else fp32, never timed (an existing store keeps its own); "
        "recorded in the store", choices=DTYPES)
    compute_path: str = option(
        "auto", "--compute-path", "implementation of neural encoders: auto (fixed per device: "
        "the CPU fast path on a CPU, the stock modules on a GPU), or force one (fp32: same "
        "numbers to ~1e-6; a bf16 store records its path)", choices=COMPUTE_PATHS)
    storage_dtype: str = option("float32", "--storage-dtype", "dtype of the stored arrays; "
                                "float16 halves the store", choices=STORAGE_DTYPES)
    batch_size: int | None = option(None, "--batch-size", "max clips per encoder call, >= 1",
                                    default_text=_per_modality(lambda s: s.batch_size_help()))
    batch_seconds: float = option(160.0, "--batch-seconds", "max padded seconds of input per "
                                  "encoder call (clips x the longest), > 0")
    workers: int | None = option(
        None, "--workers", f"decoding processes, 0-{MAX_WORKERS} (0: decode in the main process)",
        default_text=_per_modality(lambda s: s.workers_help))
    overwrite: bool = option(False, "--overwrite", "replace a store made with another "
                             "configuration", switch=True)
    fail_fast: bool = option(False, "--fail-fast", "stop at the first failed clip", switch=True)
    skip_missing: bool = option(False, "--skip-missing", "record clips whose files do not exist "
                                "as missing instead of refusing", switch=True)
    retry_failed: bool = option(False, "--retry-failed", "try failed clips again", switch=True)
    prune: bool = option(False, "--prune", "drop the clips of an existing store that the "
                         "manifest (or shard) does not list; without it such a store is refused",
                         switch=True)
    commit_every: int = option(256, "--commit-every", "write finished clips to disk at least "
                               "every N clips, >= 1; a killed run loses at most N clips of work",
                               metavar="N")
    classes: tuple[str, ...] | None = option(
        None, "--classes", "the label set, in this order, separated by commas (mer2023: MER "
        "2023's six): a manifest label outside it is refused, with its line; recorded in the "
        "store", metavar="A,B,C", default_text="any label: the manifest's own classes, named "
        "with their counts, a rare one warned about")
    progress: bool | None = option(None, "--no-progress", "no progress bar (without it: a bar "
                                   "when stderr is a terminal)", switch=False)
    """None: a bar when stderr is a terminal."""
    modality_options: Any = option(None)
    """The modality's own options (an instance of its stage's ``Options``: VideoOptions,
    TextOptions); None: its defaults."""

    def __post_init__(self) -> None:
        stage = get_stage(self.modality)
        self._set("encoder_options", self._encoder_options())
        if self.encoder is not None:
            from mer_features.encoders.base import parse_encoder_spec

            if not isinstance(self.encoder, str):
                raise ParameterError(f"`encoder` must be an encoder spec such as 'whisper'; got "
                                     f"{self.encoder!r}.", "encoder")
            try:
                parse_encoder_spec(self.encoder, self.modality)
            except EncoderError as e:
                raise ParameterError(str(e), "encoder") from None
        if not isinstance(self.manifest, (str, os.PathLike, Manifest)):
            raise ParameterError(f"`manifest` must be the path of a manifest CSV (or a "
                                 f"Manifest); got {self.manifest!r}.", "manifest")
        if self.out is not None and not isinstance(self.out, (str, os.PathLike)):
            raise ParameterError(f"`out` must be a store path; got {self.out!r}.", "out")
        for name, allowed in (("dtype", DTYPES), ("storage_dtype", STORAGE_DTYPES),
                              ("compute_path", COMPUTE_PATHS)):
            if getattr(self, name) not in allowed:
                raise ParameterError(f"`{name}` must be one of {', '.join(allowed)}; got "
                                     f"{getattr(self, name)!r}.", name)
        if not isinstance(self.device, str) or not DEVICE_PATTERN.fullmatch(self.device):
            raise ParameterError(f"`device` must be auto, cpu, cuda or cuda:N; got "
                                 f"{self.device!r}.", "device")
        for name, low, high, optional in (("seed", 0, None, False), ("batch_size", 1, None, True),
                                          ("workers", 0, MAX_WORKERS, True),
                                          ("commit_every", 1, None, False)):
            value = getattr(self, name)
            if optional and value is None:
                continue
            if not _integer(value) or value < low or (high is not None and value > high):
                rule = f"from {low} to {high}" if high is not None else f">= {low}"
                raise ParameterError(f"`{name}` must be an integer {rule}; got {value!r}.", name)
        if not _number(self.batch_seconds) or not self.batch_seconds > 0:  # False for NaN
            raise ParameterError(f"`batch_seconds` must be a number > 0; got "
                                 f"{self.batch_seconds!r}.", "batch_seconds")
        for name in ("overwrite", "fail_fast", "skip_missing", "retry_failed", "prune"):
            if not isinstance(getattr(self, name), bool):
                raise ParameterError(f"`{name}` must be True or False; got "
                                     f"{getattr(self, name)!r}.", name)
        if self.progress is not None and not isinstance(self.progress, bool):
            raise ParameterError(f"`progress` must be True, False or None; got "
                                 f"{self.progress!r}.", "progress")
        from mer_features.corpora.classes import parse_classes

        self._set("classes", parse_classes(self.classes))
        self._set("noise", self._noise())
        self._set("shard", self._shard())
        if self.modality_options is None:
            self._set("modality_options", stage.Options())
        elif not isinstance(self.modality_options, stage.Options):
            raise ParameterError(f"`modality_options` of the {self.modality} modality must be a "
                                 f"{stage.Options.__name__}; got "
                                 f"{type(self.modality_options).__name__}.", "modality_options")

    def _set(self, name: str, value: Any) -> None:
        object.__setattr__(self, name, value)

    def _encoder_options(self) -> dict[str, Any]:
        if not isinstance(self.encoder_options, Mapping) or not all(
                isinstance(k, str) for k in self.encoder_options):
            raise ParameterError(f"`encoder_options` must map option names to values; got "
                                 f"{self.encoder_options!r}.", "encoder_options")
        values = {k.replace("-", "_"): v for k, v in self.encoder_options.items()}
        if self.layer is not None:
            if self.layer not in LAYERS:
                raise ParameterError(f"`layer` must be one of {', '.join(LAYERS)}; got "
                                     f"{self.layer!r}.", "layer")
            if values.get("layer", self.layer) != self.layer:
                raise ParameterError(f"`layer` is {self.layer!r} but `encoder_options` sets "
                                     f"layer={values['layer']!r}; give it once.", "layer")
            values["layer"] = self.layer
        return values

    def _noise(self) -> Any:
        from mer_features.noise.spec import NoiseSpec, parse_noise

        if self.noise is None or isinstance(self.noise, NoiseSpec):
            return self.noise
        if isinstance(self.noise, str):
            return parse_noise(self.noise)
        raise ParameterError(f"`noise` must be a noise spec such as 'snr=5' or a NoiseSpec; got "
                             f"{self.noise!r}.", "noise")

    def _shard(self) -> Any:
        from mer_features.pipeline.distributed import Shard, parse_shard

        if self.shard is None or isinstance(self.shard, Shard):
            return self.shard
        if isinstance(self.shard, str):
            return parse_shard(self.shard)
        raise ParameterError(f"`shard` must be 'I/N' or a Shard; got {self.shard!r}.", "shard")


def _integer(value: Any) -> bool:
    import numbers

    return isinstance(value, numbers.Integral) and not isinstance(value, bool)


def _number(value: Any) -> bool:
    import numbers

    return isinstance(value, numbers.Real) and not isinstance(value, bool)


def _levels_help() -> str:
    from mer_features.noise import level_help

    return f"space-separated noise levels, clean among them: {level_help()}"


@dataclass(frozen=True)
class SweepOptions:
    """What a sweep adds to the options of one extraction (which it makes at every level, with
    its own ``out`` and ``noise``)."""

    levels: str | Sequence[str] = option(
        "", "--levels", _levels_help,
        metavar="LEVELS", required=True)
    prefix: str | Path | None = option(
        None, "--prefix", "stores are PREFIX.h5 (clean) and PREFIX-<level>.h5, the sweep file "
        "PREFIX.sweep.json", metavar="STORE_PREFIX",
        default_text="features/<corpus>-<modality>-<encoder>")
    source: str = option("white", "--source", "the noise of bare SNR levels: white, pink, "
                         "babble or a folder of audio files")


def extract_options(**keywords: Any) -> ExtractOptions:
    """:class:`ExtractOptions` from keywords: its own fields; a modality's name with that
    modality's options (``video=VideoOptions(fps=2)``); or fields of the modality's options
    (``fps=2``, ``text_column="chinese"``). Options of another modality than ``modality`` are
    checked, then left out (they act on that modality only: one command line can serve every
    modality); an unknown keyword is a TypeError."""
    own = {f.name for f in fields(ExtractOptions)}
    common = {k: v for k, v in keywords.items() if k in own}
    modality = common.get("modality", "audio")
    stage = get_stage(modality)
    given: dict[Any, dict[str, Any]] = {}
    for key, value in keywords.items():
        if key in own:
            continue
        if key in known_modalities():  # video=VideoOptions(...)
            options_class = get_stage(key).Options
            if value is not None and not isinstance(value, options_class):
                raise ParameterError(f"`{key}` must be a {options_class.__name__}; got "
                                     f"{type(value).__name__}.", key)
            if key == modality and value is not None:
                common["modality_options"] = value
            continue
        owner = next((s for s in stages() if key in {f.name for f in fields(s.Options)}), None)
        if owner is None:
            raise TypeError(f"unexpected keyword argument '{key}': options are the fields of "
                            "ExtractOptions and of the modalities' options")
        given.setdefault(owner, {})[key] = value
    for owner, values in given.items():
        if owner is not stage:
            owner.Options(**values)  # checked, though this extraction does not read them
            continue
        base = common.get("modality_options") or stage.Options()
        if not isinstance(base, stage.Options):
            raise ParameterError(f"`modality_options` of the {modality} modality must be a "
                                 f"{stage.Options.__name__}; got {type(base).__name__}.",
                                 "modality_options")
        common["modality_options"] = replace(base, **values)
    return ExtractOptions(**common)


__all__ = ["COMPUTE_PATHS", "DTYPES", "ExtractOptions", "LAYERS", "MAX_WORKERS",
           "STORAGE_DTYPES", "SweepOptions", "extract_options"]
