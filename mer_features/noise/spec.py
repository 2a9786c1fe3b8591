"""Noise specs and the registry of noise keys: the one place that says what a key means.

A spec is a comma-separated list of ``key=value`` (``snr=5:10,source=pink,blur=1|2|4``). Each
key is declared once, by a :class:`NoiseKey` registered next to the code that applies it
(:mod:`.audio` for ``snr`` and ``source``, :mod:`.video` for ``blur``, ``scale`` and ``jpeg``);
the declaration says everything the toolkit needs to know about the key:

* its side (``audio`` or ``video``: which modality it corrupts);
* how to parse its value, the rule a value must follow (for error messages) and an example
  (for the usage line);
* its canonical text (what the store fingerprint and the per-clip random streams see);
* its part of a human label (``10 dB pink``, ``blur 1|2|4``), read back from a store's
  recorded spec by :func:`describe_noise` (used by ``mer-heads robustness``);
* its sweep shorthand, if any (``20``, ``10:pink``, ``blur4``; see :func:`parse_level`);
* how to apply it (a function of the decoded media and the clip's random stream).

Adding a noise type is therefore one :class:`NoiseKey` plus the function that applies it, in
the module of its side. Keys are kept in registration order, which is the order of the
canonical form and of application.
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from mer_features.errors import ParameterError

SIDES = ("audio", "video")


class NoiseSpecError(ParameterError):
    """A noise spec that does not parse, or a noise folder that cannot be used; ``parameter``
    is the option that gave it (``noise``, or ``levels`` for a sweep level)."""

    def __init__(self, message: str, parameter: str | None = "noise"):
        super().__init__(message, parameter)


@dataclass(frozen=True)
class NoiseKey:
    """The declaration of one noise key (see the module docstring).

    parse : value text -> value; raises ValueError when the text breaks ``rule``.
    text : value -> its canonical text (the part after ``=``).
    describe : (the spec's value texts, result dict) -> this key's part of the label; may set
        the result's ``snr_db`` and ``source``; ValueError when the spec is not one the toolkit
        writes. None: the key adds nothing to labels (``source`` is part of the SNR's label).
    needs : another key this one only modifies (``source`` needs ``snr``); when that key is
        given and this one is not, ``default`` is filled in.
    check : called with the parsed value once the whole spec parses (``source`` checks its
        folder now, before any work).
    level : sweep shorthand: (level text, options) -> (spec text, store tag), or None when the
        level is not this key's shorthand; ``level_help`` shows it (``blurF (blur4)``).
    apply : audio keys: (:class:`AudioNoiseInput`, value, rng) -> (waveform, drawn info);
        video keys: (frames, value, rng) -> (frames, drawn value). None for modifiers.
    """

    name: str
    side: str
    rule: str
    example: str
    parse: Callable[[str], Any]
    text: Callable[[Any], str] = str
    describe: Callable[[Mapping[str, str], dict[str, Any]], str] | None = None
    needs: str | None = None
    default: Any = None
    check: Callable[[Any], None] | None = None
    level: Callable[[str, Mapping[str, str]], tuple[str, str] | None] | None = None
    level_help: str = ""
    apply: Callable[..., tuple[Any, Any]] | None = None


_KEYS: dict[str, NoiseKey] = {}


def register_noise_key(key: NoiseKey) -> NoiseKey:
    """Add a key to the registry; a second key of the same name is refused."""
    if key.name in _KEYS and _KEYS[key.name] is not key:
        raise NoiseSpecError(f"A noise key named '{key.name}' is already registered.")
    if key.side not in SIDES:
        raise NoiseSpecError(f"Noise key '{key.name}': side must be one of {', '.join(SIDES)}; "
                             f"got '{key.side}'.")
    _KEYS[key.name] = key
    return key


def noise_keys(side: str | None = None) -> list[NoiseKey]:
    """The registered keys in order, those of ``side`` only when given."""
    return [k for k in _KEYS.values() if side in (None, k.side)]


def usage() -> str:
    """The one-line reminder of the spec syntax that ends every parse error."""
    return ("Write it as comma-separated key=value: "
            + ", ".join(k.example for k in noise_keys()) + ".")


class NoiseSpec:
    """A parsed spec: the values of its keys, in registry order.

    Each key reads as an attribute (``spec.snr``, ``spec.blur``), giving its default (None, or
    the modifier's default such as ``source`` = white) when the spec does not set it.
    ``text`` is the spec as written; equality and hashing ignore it.
    """

    __slots__ = ("values", "text")

    def __init__(self, values: Mapping[str, Any], text: str = ""):
        order = {name: i for i, name in enumerate(_KEYS)}
        unknown = sorted(set(values) - set(order))
        if unknown:
            raise NoiseSpecError(f"Unknown noise key(s) {', '.join(unknown)}; known keys: "
                                 f"{', '.join(_KEYS)}.")
        self.values = dict(sorted(values.items(), key=lambda item: order[item[0]]))
        self.text = text

    def __getattr__(self, name: str) -> Any:
        if name.startswith("__") or name not in _KEYS:
            raise AttributeError(name)
        return self.values.get(name, _KEYS[name].default)

    def __eq__(self, other: object) -> bool:
        return isinstance(other, NoiseSpec) and self.values == other.values

    def __hash__(self) -> int:
        return hash(tuple(self.values.items()))

    def __repr__(self) -> str:
        return f"NoiseSpec({canonical(self)!r})"

    def __reduce__(self) -> tuple:  # travels to decoding workers
        return (NoiseSpec, (self.values, self.text))

    def acts_on(self, side: str) -> bool:
        """Whether the spec has a key acting on ``side`` (audio or video)."""
        return any(_KEYS[name].side == side for name in self.values)

    @property
    def has_audio(self) -> bool:
        return self.acts_on("audio")

    @property
    def has_video(self) -> bool:
        return self.acts_on("video")

    def restricted(self, side: str | None) -> NoiseSpec | None:
        """The spec of the keys acting on ``side`` only (None when none does, or for no side):
        what a modality's store records and what its random draws depend on, so that a key
        of the other side changes neither."""
        if side is None:
            return None
        values = {name: value for name, value in self.values.items() if _KEYS[name].side == side}
        if not values:
            return None
        spec = NoiseSpec(values)
        spec.text = canonical(spec)
        return spec

    def applied(self, side: str) -> Iterator[tuple[NoiseKey, Any]]:
        """(key, value) of the keys of ``side`` that act by themselves, in order."""
        for name, value in self.values.items():
            key = _KEYS[name]
            if key.side == side and key.apply is not None:
                yield key, value


def parse_noise(text: str, *, check: bool = True) -> NoiseSpec:
    """Parse a spec such as ``snr=5:10,source=pink`` or ``blur=1|2|4,jpeg=40``: the one
    grammar of noise specs.

    Raises :class:`NoiseSpecError` naming the part at fault and the rule it breaks for an
    unknown, repeated or empty key, a value out of range (an infinite or NaN SNR, a blur factor
    outside 1, 2, 4, 8, a scale outside (0, 1], a JPEG quality outside 1-100), and (unless
    ``check`` is False: a spec read back from a store) a noise folder that cannot be used.
    """
    values: dict[str, Any] = {}
    for part in (p.strip() for p in text.split(",")):
        if not part:
            continue
        name, sep, value = part.partition("=")
        name, value = name.strip(), value.strip()
        if not sep or not value:
            raise NoiseSpecError(f"Noise spec '{text}': '{part}' is not key=value. {usage()}")
        key = _KEYS.get(name)
        if key is None:
            raise NoiseSpecError(f"Noise spec '{text}': unknown key '{name}' (known keys: "
                                 f"{', '.join(_KEYS)}). {usage()}")
        if name in values:
            raise NoiseSpecError(f"Noise spec '{text}': '{name}' is given twice; give each key "
                                 f"once. {usage()}")
        try:
            values[name] = key.parse(value)
        except ValueError:
            raise NoiseSpecError(f"Noise spec '{text}': bad value '{value}' for '{name}': "
                                 f"{key.rule}. {usage()}") from None
    for key in noise_keys():
        if key.needs is None:
            continue
        if key.name in values and key.needs not in values:
            raise NoiseSpecError(f"Noise spec '{text}': '{key.name}' needs an '{key.needs}'. "
                                 f"{usage()}")
        if key.needs in values and key.name not in values and key.default is not None:
            values[key.name] = key.default
    if not any(_KEYS[name].needs is None for name in values):
        raise NoiseSpecError(f"Noise spec '{text}' corrupts nothing. {usage()}")
    spec = NoiseSpec(values, text)
    for name, value in spec.values.items():
        if check and _KEYS[name].check is not None:
            _KEYS[name].check(value)
    return spec


def canonical(spec: NoiseSpec) -> str:
    """The spec's canonical text: keys in registry order, defaults filled in, folders
    absolute. The fingerprint and every clip's random stream are functions of it."""
    return ",".join(f"{name}={_KEYS[name].text(value)}" for name, value in spec.values.items())


def clip_rng(seed: int, name: str, spec: NoiseSpec, stream: str) -> np.random.Generator:
    """The random stream of one clip: a function of (seed, clip name, spec, stream) only."""
    key = f"{int(seed)}\x00{name}\x00{canonical(spec)}\x00{stream}".encode()
    words = np.frombuffer(hashlib.blake2b(key, digest_size=32).digest(), dtype=np.uint64)
    return np.random.default_rng(np.random.SeedSequence([int(w) for w in words]))


def describe_noise(spec: str, modality: str | None = None) -> dict[str, Any]:
    """What a canonical noise spec (``snr=10,source=pink``, ``blur=1|2|4``) does, for labels.

    Returns ``label`` (``10 dB pink``, ``blur 1|2|4``), ``snr_db`` (middle of the SNR range or
    None) and ``source`` (None without additive noise). The spec is read with
    :func:`parse_noise` (the one grammar), without checking a noise folder (a store's may be
    gone). A store records the spec it was extracted with; with ``modality``, only the keys
    acting on it count (snr and source on audio; blur, scale and jpeg on video; none on text).
    A spec that does not parse, or has no key for ``modality``, is labelled by its text.
    """
    plain = {"label": spec, "snr_db": None, "source": None}
    try:
        parsed: NoiseSpec | None = parse_noise(spec, check=False)
    except NoiseSpecError:
        return plain
    if modality is not None:
        parsed = parsed.restricted(modality if modality in SIDES else None)
    if parsed is None:
        return plain
    texts = {name: _KEYS[name].text(value) for name, value in parsed.values.items()}
    result: dict[str, Any] = dict(plain)
    try:
        parts = [key.describe(texts, result) for key in noise_keys()
                 if key.name in texts and key.describe is not None]
    except ValueError:  # a key whose label cannot be made from its value
        return plain
    result["label"] = " + ".join(parts) or spec
    return result


# --------------------------------------------------------------------------------------------
# Sweep levels


@dataclass(frozen=True)
class Level:
    """One level of a robustness sweep: ``spec`` None for the clean level; ``tag`` names its
    store (``PREFIX-<tag>.h5``; "" for the clean store ``PREFIX.h5``)."""

    level: str
    spec: NoiseSpec | None
    tag: str

    @property
    def is_clean(self) -> bool:
        return self.spec is None

    def store(self, prefix: str | Path) -> Path:
        prefix = str(prefix)
        return Path(f"{prefix}-{self.tag}.h5" if self.tag else f"{prefix}.h5")


def parse_level(level: str, options: Mapping[str, str] | None = None) -> Level:
    """A sweep level: ``clean``; a raw spec (``jpeg=30``, tagged with the characters other than
    letters, digits, ``.`` and ``-`` replaced by ``_``); or a key's shorthand (``20``: SNR 20
    dB of ``options['source']`` noise, ``10:pink``, ``blur4``). Raises NoiseSpecError."""
    options = {"source": "white", **(options or {})}
    level = level.strip()
    if level == "clean":
        return Level(level, None, "")
    if "=" in level:
        text, tag = level, _tag(level)
    else:
        found = next((hit for key in noise_keys() if key.level is not None
                      if (hit := key.level(level, options)) is not None), None)
        if found is None:
            raise NoiseSpecError(f"Level '{level}' is not one of: {level_help()}.")
        text, tag = found
    return Level(level, parse_noise(text), tag)


def level_help() -> str:
    """The level grammar in words, from the registry (for errors and the CLI's help)."""
    return ", ".join(["clean", *(k.level_help for k in noise_keys() if k.level is not None),
                      "or a noise spec (jpeg=30)"])


def _tag(text: str) -> str:
    """Bytes other than ASCII letters, digits, ``.`` and ``-`` become ``_`` (the Makefile's
    ``tr -c 'A-Za-z0-9.-' '_'``, which works on bytes)."""
    return re.sub(rb"[^A-Za-z0-9.-]", b"_", text.encode("utf-8")).decode("ascii")
