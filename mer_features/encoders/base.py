"""The encoder contract and the registry that maps names to encoders.

An encoder is a small object with a declared contract (after lhotse's ``FeatureExtractor``):
a ``name``, a ``modality``, a ``version``, a frozen ``Config`` dataclass, an output spec, a lazy
:meth:`Encoder.load`, and :meth:`Encoder.encode_batch`. Its fingerprint fields come from these
declarations, never from its code.
"""

from __future__ import annotations

import dataclasses
import typing
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any, ClassVar

import numpy as np

from mer_features.errors import ClipError, EncoderError


@dataclass(frozen=True)
class OutputSpec:
    """Shapes an encoder produces: utterance (``utterance_shape``), frames (n, ``frame_dim``)."""

    utterance_shape: tuple[int, ...]
    frame_dim: int
    frame_rate: float | None  # frames per second, None when frames are not evenly spaced


@dataclass
class Encoded:
    """One clip's features: utterance (utterance_shape), frames (n_frames, frame_dim), times (n_frames,)."""

    utterance: np.ndarray
    frames: np.ndarray
    frame_times: np.ndarray
    info: dict[str, Any] = dataclasses.field(default_factory=dict)


class Encoder:
    """Base class; subclasses set the class attributes and implement the methods."""

    name: ClassVar[str]
    modality: ClassVar[str]
    version: ClassVar[str]
    Config: ClassVar[type]
    spec_argument: ClassVar[str | None] = None
    """Config field filled from the part after ':' in ``NAME:ARG`` specs (e.g. hf:PATH)."""
    runs_in_workers: ClassVar[bool] = False
    """True for light CPU encoders: each decoding worker then encodes its clips too."""
    uses_dtype: ClassVar[bool] = False
    """True when the compute dtype (fp32/bf16/fp16) changes the output."""
    float16_safe: ClassVar[bool] = True
    """False when the outputs can exceed float16's range (+-65504): float16 stores are refused."""
    cpu_only: ClassVar[bool] = False
    """True for an engine with no GPU path (e5): it runs on the CPU whatever --device says, and
    the device is never resolved (which would import torch for nothing)."""
    threads: int | None = None
    """CPU threads of an encoder that runs its own thread pool (e5), set from --workers; None:
    every core the process may use. It changes no output, so it is never fingerprinted."""

    impl: str = "stock"
    """How to compute: ``stock`` modules, or ``fast`` where :meth:`impls` offers a fast path;
    set before :meth:`load` (the pipeline sets it from :mod:`mer_features.encoders.tuning`: the
    first of :meth:`impls` unless forced). In fp32 the implementations agree to ~1e-6 and the
    fingerprint leaves it out; a store in bf16 or fp16 records it."""

    def __init__(self, config: Any):
        self.config = config
        self.device = "cpu"
        self.dtype = "fp32"

    # declarations ----------------------------------------------------------------------
    def weights_identity(self) -> dict[str, Any]:
        """What identifies the weights: package versions, file hashes, or a hub revision."""
        raise NotImplementedError

    def output_spec(self) -> OutputSpec:
        raise NotImplementedError

    def preprocessing(self) -> dict[str, Any]:
        """Input preparation that changes the numbers (sample rate, decoder, ...)."""
        raise NotImplementedError

    def describe(self) -> str:
        arg = getattr(self.config, self.spec_argument) if self.spec_argument else None
        return f"{self.name}:{arg}" if arg else self.name

    @classmethod
    def family(cls, values: Mapping[str, Any]) -> type[Encoder]:
        """The class that builds an encoder from these option ``values`` (the spec argument
        included): ``cls`` itself, or a subclass with its own ``Config`` for a family of models
        (``hf:`` picks one by the checkpoint's model type)."""
        return cls

    def compute_dtype(self, dtype: str) -> str:
        """The compute precision a store records (its fingerprint's ``compute_dtype``) for a
        run in ``dtype`` on :attr:`device`: ``dtype`` where it changes the output
        (:attr:`uses_dtype`), else fp32; an encoder with its own precision option says which."""
        return dtype if self.uses_dtype else "fp32"

    def impls(self, device: str) -> tuple[str, ...]:
        """The implementations this encoder can compute with on ``device`` (see :attr:`impl`),
        the default first (measured fastest: benchmarks/bench_audio.py)."""
        return ("stock",)

    def shape_fields(self) -> dict[str, Any]:
        """What decides this encoder's speed besides the machine (its architecture's sizes and
        options): part of the key under which its measured compute paths are cached."""
        return {"encoder": self.name, "modality": self.modality, "version": self.version,
                "config": dataclasses.asdict(self.config)}

    # work -------------------------------------------------------------------------------
    def load(self, device: str = "cpu", dtype: str = "fp32") -> None:
        """Load weights onto ``device``; called once, in the process that encodes."""
        self.device, self.dtype = device, dtype

    def encode_batch(self, items: Sequence[Any]) -> list[Encoded | ClipError]:
        """Encode decoded inputs; a per-item ClipError marks an item that cannot be encoded."""
        raise NotImplementedError


_REGISTRY: dict[tuple[str, str], type[Encoder]] = {}


def register_encoder(cls: type[Encoder]) -> type[Encoder]:
    """Class decorator adding an encoder to the registry under (modality, name)."""
    key = (cls.modality, cls.name)
    if key in _REGISTRY and _REGISTRY[key] is not cls:
        raise EncoderError(f"An encoder named '{cls.name}' is already registered for the "
                           f"{cls.modality} modality ({_REGISTRY[key].__module__}).")
    if not (dataclasses.is_dataclass(cls.Config) and cls.Config.__dataclass_params__.frozen):
        raise EncoderError(f"Encoder '{cls.name}': Config must be a frozen dataclass.")
    _REGISTRY[key] = cls
    return cls


def known_encoders(modality: str | None = None) -> list[str]:
    """The registered encoders' specs, sorted (``hf:<path or id>`` for those taking an
    argument), of ``modality`` only when given."""
    return sorted(f"{name}:<path or id>" if cls.spec_argument else name
                  for (mod, name), cls in _REGISTRY.items() if modality in (None, mod))


@dataclass(frozen=True)
class EncoderSpec:
    """A parsed encoder spec: ``name`` and the ``argument`` after ':' ("" when none), e.g.
    ``hf:/models/hubert-base`` -> ("hf", "/models/hubert-base")."""

    name: str
    argument: str = ""

    @property
    def text(self) -> str:
        return f"{self.name}:{self.argument}" if self.argument else self.name

    @property
    def short(self) -> str:
        """The name with the last part of the argument's path: ``hf:hubert-base``."""
        tail = self.argument.rstrip("/").rsplit("/", 1)[-1] if self.argument else ""
        return f"{self.name}:{tail}" if tail else self.name

    @property
    def slug(self) -> str:
        """For file names: ``hf-hubert-base``, characters other than letters, digits, '.',
        '_' and '-' replaced by '_'."""
        import re

        tail = self.argument.rstrip("/").rsplit("/", 1)[-1] if self.argument else ""
        return re.sub(r"[^A-Za-z0-9._-]+", "_", self.name + (f"-{tail}" if tail else ""))


def parse_encoder_spec(spec: str, modality: str | None = None) -> EncoderSpec:
    """The one reader of encoder specs (``egemaps``, ``hf:/models/hubert-base``).

    With ``modality``, the name must be an encoder registered for it, with an argument exactly
    when it takes one; an EncoderError lists the known encoders otherwise.
    """
    if not isinstance(spec, str) or not spec.strip():
        raise EncoderError(f"An encoder spec must be a name such as 'egemaps' or 'hf:<path or "
                           f"id>'; got {spec!r}.")
    name, _, argument = spec.partition(":")
    parsed = EncoderSpec(name, argument)
    if modality is not None:
        encoder_class(modality, parsed)
    return parsed


def encoder_class(modality: str, spec: EncoderSpec) -> type[Encoder]:
    """The registered class of ``spec`` for ``modality`` (see :func:`parse_encoder_spec`)."""
    cls = _REGISTRY.get((modality, spec.name))
    if cls is None:
        raise EncoderError(
            f"Unknown {modality} encoder '{spec.text}'. Known {modality} encoders: "
            f"{', '.join(known_encoders(modality)) or 'none'}."
        )
    if cls.spec_argument and not spec.argument:
        raise EncoderError(f"Encoder '{spec.name}' needs an argument: "
                           f"'{spec.name}:<path or hub id>'.")
    if not cls.spec_argument and spec.argument:
        raise EncoderError(f"Encoder '{spec.name}' takes no ':' argument (got '{spec.text}').")
    return cls


def create_encoder(modality: str, spec: str, options: Mapping[str, Any] | None = None) -> Encoder:
    """Build an encoder from a spec such as ``egemaps`` or ``hf:/models/hubert-base``.

    ``options`` set config fields; strings are converted to the field's type.
    """
    parsed = parse_encoder_spec(spec)
    cls = encoder_class(modality, parsed)
    values: dict[str, Any] = dict(options or {})
    if cls.spec_argument:
        values[cls.spec_argument] = parsed.argument
    cls = cls.family(values)
    return cls(_make_config(cls, values))


def _make_config(cls: type[Encoder], values: Mapping[str, Any]) -> Any:
    fields = {f.name: f for f in dataclasses.fields(cls.Config)}
    unknown = sorted(set(values) - set(fields))
    if unknown:
        raise EncoderError(
            f"Encoder '{cls.name}' has no option(s) {', '.join(unknown)}; its options are "
            f"{', '.join(sorted(fields))}."
        )
    hints = typing.get_type_hints(cls.Config)
    converted = {k: _convert(cls.name, k, v, hints[k]) for k, v in values.items()}
    try:
        return cls.Config(**converted)
    except (TypeError, ValueError) as e:
        raise EncoderError(f"Encoder '{cls.name}': {e}") from e


def _convert(encoder: str, key: str, value: Any, hint: Any) -> Any:
    if not isinstance(value, str):
        return value
    args = [a for a in typing.get_args(hint) if a is not type(None)] or [hint]
    target = args[0] if len(args) == 1 else str
    try:
        if target is bool:
            lowered = value.lower()
            if lowered not in ("true", "false", "1", "0", "yes", "no"):
                raise ValueError(value)
            return lowered in ("true", "1", "yes")
        if target in (int, float):
            return target(value)
    except ValueError:
        raise EncoderError(f"Option '{key}' of encoder '{encoder}' must be a "
                           f"{target.__name__}; got '{value}'.") from None
    return value
