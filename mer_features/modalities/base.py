"""The modality stage contract and its registry.

A modality is a registered type, like an encoder: a :class:`Stage` subclass declares once what
the toolkit needs to know about its input on the way from a manifest row to an encoder:

* ``name`` and its ``Options`` (a frozen dataclass whose fields are options of
  ``mer-features extract``, made with :func:`mer_features.options.option`);
* which manifest columns it reads (:meth:`Stage.columns`) and which file holds a clip's input
  (:meth:`Stage.media`);
* its fingerprint fields (:meth:`Stage.fingerprint_fields`: the decoder and how it is used);
* the default encoder, batch size (:attr:`Stage.batch_sizes`) and decoding workers;
* its side of the noise keys (``noise_side``: the keys of :mod:`mer_features.noise` with that
  side act on it, the others never reach it);
* short synthetic inputs for the benchmarks' timing probes (:meth:`Stage.probe_inputs`);
* and the work: hashing inputs, settling clips that need no encoder, decoding (in a worker
  process), a main-process step between decoding and encoding, lengths for batching, extra
  per-frame arrays for the store.

Adding a modality is one module with one registered class, plus its import in
:mod:`mer_features.modalities`.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, fields, is_dataclass
from pathlib import Path
from typing import Any, ClassVar

import numpy as np

from mer_features.corpora.manifest import Clip, Manifest, read_manifest_for
from mer_features.errors import MerFeaturesError, ParameterError


@dataclass(frozen=True)
class NoOptions:
    """The options of a modality that has none."""


@dataclass
class Precheck:
    """A clip settled without decoding: status ``empty`` or ``failed`` at ``stage``."""

    status: str
    stage: str = ""
    reason: str = ""


class Stage:
    """One modality's stage. Subclasses set the class attributes and override what differs.

    An instance holds one run's settings: ``options`` (an instance of ``Options``), the
    ``device`` the encoder runs on, the ``noise`` spec that acts on this modality (or None) with
    its ``seed``, and the number of decoding ``workers``.
    """

    name: ClassVar[str]
    Options: ClassVar[type] = NoOptions
    default_encoder: ClassVar[str]
    noise_side: ClassVar[str | None] = None
    """Which noise keys act on this modality (their ``side``); None: none do."""
    batch_sizes: ClassVar[Mapping[str, int]] = {"cpu": 1, "gpu": 32}
    """Default clips per encoder call: ``gpu``, ``cpu``, and ``cpu bf16`` when it differs."""
    workers_help: ClassVar[str] = "one per core, at most 8"
    """The default of --workers for this modality, in words."""
    uses_workers: ClassVar[bool] = True
    """False when there is nothing to decode (text): clips are prepared in this process."""
    overlap_prepare: bool = False
    """Whether :meth:`prepare` is heavy enough to run one batch ahead, in a thread beside the
    encoder (face tracking: MTCNN on one CPU thread while the encoder uses the other cores)."""

    def __init__(self, options: Any = None, *, device: str = "cpu", noise: Any = None,
                 seed: int = 0, workers: int = 0):
        self.options = self.Options() if options is None else options
        self.device = device
        self.noise = noise
        self.seed = seed
        self.workers = workers

    # declarations -------------------------------------------------------------------------
    def columns(self) -> tuple[str, ...]:
        """The manifest columns this modality reads its input from (any one will do)."""
        return (self.name,)

    def media(self, clip: Clip) -> Path | None:
        """The file that holds ``clip``'s input (None when the input is not a file)."""
        return None

    def fingerprint_fields(self) -> dict[str, Any]:
        """What the stage decodes with, and how: its part of the store's ``preprocessing``."""
        return {}

    @classmethod
    def default_batch_size(cls, device: str, dtype: str) -> int:
        """Clips per encoder call when none is given (:attr:`batch_sizes`)."""
        if str(device).startswith("cuda"):
            return cls.batch_sizes["gpu"]
        return cls.batch_sizes.get(f"cpu {dtype}", cls.batch_sizes["cpu"])

    @classmethod
    def batch_size_help(cls) -> str:
        sizes = cls.batch_sizes
        cpu = f"{sizes['cpu']} on a CPU" + "".join(
            f" ({n} in {key.split()[1]})" for key, n in sizes.items() if key.startswith("cpu "))
        return f"{cpu}, {sizes['gpu']} on a GPU"

    def default_workers(self, encoder: Any) -> int:
        """Decoding processes when none are given: one per core, at most 8."""
        return max(1, min(os.cpu_count() or 1, 8))

    @classmethod
    def probe_size(cls) -> dict[str, Any]:
        """The size of :meth:`probe_inputs` (part of the key of cached timings)."""
        raise NotImplementedError

    @classmethod
    def probe_inputs(cls, encoder: Any) -> list[Any]:
        """Short synthetic inputs for ``encoder``, the same on every run so that timings
        compare across runs."""
        raise NotImplementedError

    # the manifest -------------------------------------------------------------------------
    def check_corpus(self, manifest: Manifest) -> None:
        """Checks on the whole manifest, before a shard takes its part (none by default)."""

    def column_problem(self, manifest: Manifest) -> str:
        """Why a column this modality reads cannot be used although it exists ("" when it
        can; none by default)."""
        return ""

    def check_inputs(self, manifest: Manifest, *, skip_missing: bool = False
                     ) -> tuple[list[Clip], list[tuple[Clip, str]]]:
        """``(usable, missing)``: the clips to process, and ``(clip, reason)`` for those whose
        input file does not exist (only with ``skip_missing``; otherwise a ManifestError)."""
        _, usable, missing = self.read_manifest(manifest, skip_missing=skip_missing)
        return usable, missing

    def read_manifest(self, manifest: str | Path | Manifest, *, skip_missing: bool = False,
                      select: Callable[[str], bool] | None = None,
                      classes: Sequence[str] | None = None,
                      ) -> tuple[Manifest, list[Clip], list[tuple[Clip, str]]]:
        """The manifest read for this modality in one pass: ``(manifest, usable, missing)``,
        every problem of its rows, its columns and its input files in one ManifestError
        (:func:`mer_features.corpora.manifest.read_manifest_for`). ``classes``: the labels a
        row may hold (None: any, the corpus's own label set)."""
        return read_manifest_for(manifest, self.name, self.columns(),
                                 self.media if self.uses_media else None,
                                 skip_missing=skip_missing, column_problem=self.column_problem,
                                 corpus_check=self.check_corpus, select=select, classes=classes)

    uses_media: ClassVar[bool] = True
    """False when the input is in the manifest itself (text): no file is checked."""

    def use(self, clips: Sequence[Clip]) -> None:
        """Told the clips this run reads, before any is decoded (audio draws babble from
        them)."""

    # the work -----------------------------------------------------------------------------
    def frame_extras(self) -> tuple[tuple[str, tuple[int, ...], str], ...]:
        """Per-frame arrays besides the features: (name, trailing shape, dtype)."""
        return ()

    def input_hashes(self, clips: Sequence[Clip]) -> list[str]:
        from mer_features.fingerprint import file_hashes

        return file_hashes([self.media(clip) for clip in clips])

    def precheck(self, clip: Clip) -> Precheck | None:
        """A clip settled without decoding, or None to decode it."""
        return None

    def decode(self, clip: Clip, encoder: Any) -> Any:
        raise NotImplementedError

    def length(self, item: Any) -> float:
        """Size of a decoded input in the unit of --batch-seconds (0 when unknown)."""
        return 0.0

    def prepare(self, names: list[str], items: list[Any]) -> list[Any]:
        """Main-process step between decoding and encoding; ClipError entries fail a clip."""
        return items

    def extras(self, item: Any, encoded: Any) -> dict[str, np.ndarray]:
        return {}


_REGISTRY: dict[str, type[Stage]] = {}


def register_stage(cls: type[Stage]) -> type[Stage]:
    """Class decorator adding a modality's stage to the registry; a second stage of the same
    name is refused, and so is an option field that another modality already declares (its
    flag would be ambiguous)."""
    if cls.name in _REGISTRY and _REGISTRY[cls.name] is not cls:
        raise MerFeaturesError(f"A modality named '{cls.name}' is already registered "
                               f"({_REGISTRY[cls.name].__module__}).")
    if not (is_dataclass(cls.Options) and cls.Options.__dataclass_params__.frozen):
        raise MerFeaturesError(f"Modality '{cls.name}': Options must be a frozen dataclass.")
    for other in _REGISTRY.values():
        if other is cls:
            continue
        clash = {f.name for f in fields(cls.Options)} & {f.name for f in fields(other.Options)}
        if clash:
            raise MerFeaturesError(f"Modality '{cls.name}' declares option(s) "
                                   f"{', '.join(sorted(clash))}, which modality "
                                   f"'{other.name}' declares too; give them other names.")
    _REGISTRY[cls.name] = cls
    return cls


def known_modalities() -> tuple[str, ...]:
    """The registered modalities' names, in registration order."""
    return tuple(_REGISTRY)


def get_stage(name: str, parameter: str = "modality") -> type[Stage]:
    """The stage class of modality ``name``; an unknown name is a ParameterError listing the
    known ones."""
    try:
        return _REGISTRY[name]
    except (KeyError, TypeError):
        raise ParameterError(f"`{parameter}` must be one of {', '.join(_REGISTRY)}; got "
                             f"{name!r}.", parameter) from None


def stages() -> list[type[Stage]]:
    """Every registered stage class, in registration order."""
    return list(_REGISTRY.values())


__all__ = ["NoOptions", "Precheck", "Stage", "get_stage", "known_modalities", "register_stage",
           "stages"]
