"""Corpora: the manifest format (:mod:`.manifest`) and one importer per corpus release layout.

Each importer module declares a :class:`Corpus`: its name, a one-line help, what ``--root``
holds, its options, the function that builds the manifest, and what to print after. The
``mer-features manifest <corpus>`` subcommands are generated from this registry, so adding an
importer is one new module here plus its name in :data:`BUILT_IN`.

    >>> from mer_features import build_manifest                        # doctest: +SKIP
    >>> path, counts = build_manifest("ravdess", "/data/ravdess", "ravdess.csv")
"""

from __future__ import annotations

import importlib
from collections import namedtuple
from pathlib import Path

from mer_features.errors import ManifestError

BUILT_IN = (
    "mer2023",
    "ravdess",
    "emobox",
    "emodb",
    "iemocap",
    "meld",
    "cremad",
    "msppodcast",
    "mer2025",
)
"""The importer modules of this package, one line each.

The CLI's help is generated from these modules, so they import the manifest module (and
anything heavier) inside their functions: ``mer-features --help`` stays instant."""


class CorpusOption(namedtuple("CorpusOption", "flag help default choices switch required",
                              defaults=(None, None, False, False))):
    """One option of an importer: ``flag`` (``--text-column``) on the command line, ``dest``
    (``text_column``) in Python, with its ``help``, ``default`` and ``choices``; ``switch``
    for a flag without a value (False unless given); ``required`` for one without which the
    importer cannot run."""

    __slots__ = ()

    @property
    def dest(self) -> str:
        return self.flag.lstrip("-").replace("-", "_")


class Corpus(namedtuple("Corpus", "name help root_help build summary options", defaults=((),))):
    """An importer: ``name`` (the subcommand), ``help`` (one line), ``root_help`` (what
    ``--root`` holds), ``build(root, out, **options)`` that writes the manifest and returns its
    path and counts, ``summary(path, counts)`` that gives the line to print and notes for
    stderr, and its ``options`` (:class:`CorpusOption`). Immutable; a namedtuple rather than a
    dataclass so that the CLI's help, built from the registry, loads nothing more."""

    __slots__ = ()


_REGISTRY: dict[str, Corpus] = {}
_loaded = False


def register_corpus(corpus: Corpus) -> Corpus:
    """Add an importer; a second one of the same name is refused."""
    if corpus.name in _REGISTRY and _REGISTRY[corpus.name] is not corpus:
        raise ManifestError(f"A corpus importer named '{corpus.name}' is already registered.")
    _REGISTRY[corpus.name] = corpus
    return corpus


def known_corpora() -> dict[str, Corpus]:
    """Every registered importer by name (the built-in ones are loaded on first use)."""
    global _loaded
    if not _loaded:
        for module in BUILT_IN:
            register_corpus(importlib.import_module(f"{__name__}.{module}").CORPUS)
        _loaded = True
    return dict(_REGISTRY)


def build_manifest(corpus: str, root: str | Path, out: str | Path,
                   **options: object) -> tuple[Path, dict[str, int]]:
    """Write the manifest of a corpus release at ``root`` to ``out``; returns its path and
    counts. ``options`` are the importer's (e.g. ``text_column="chinese"`` for mer2023)."""
    corpora = known_corpora()
    if corpus not in corpora:
        raise ManifestError(f"Unknown corpus '{corpus}'; known corpora: "
                            f"{', '.join(sorted(corpora))}.")
    entry = corpora[corpus]
    unknown = sorted(set(options) - {o.dest for o in entry.options})
    if unknown:
        raise ManifestError(f"Corpus '{corpus}' has no option(s) {', '.join(unknown)}; its "
                            f"options are {', '.join(o.dest for o in entry.options) or 'none'}.")
    return entry.build(root, out, **options)


__all__ = ["BUILT_IN", "Corpus", "CorpusOption", "build_manifest", "known_corpora",
           "register_corpus"]
