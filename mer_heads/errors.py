"""Exceptions raised by :mod:`mer_heads`.

Every error the package raises on purpose derives from :class:`MerHeadsError`, so a caller (the
CLI included) can catch the package's failures without catching programming errors. Messages
say what is wrong, where, and what to do.

Two names come from elsewhere, so the project has one class for each idea:

* :class:`FingerprintMismatchError` is :mod:`mer_features`' own (stores made with another
  configuration than a run's); it derives from ``MerFeaturesError``, which the CLI reports the
  same way.
* :class:`NotFittedError` subclasses scikit-learn's ``NotFittedError`` (so
  ``except sklearn.exceptions.NotFittedError`` catches it) and :class:`MerHeadsError`. It is made
  on first use: importing scikit-learn takes seconds, and ``mer-heads --help`` must not.
"""

from __future__ import annotations

from mer_features.errors import FingerprintMismatchError


class MerHeadsError(Exception):
    """Root of every error raised on purpose by mer_heads."""


class DataError(MerHeadsError, ValueError):
    """Feature stores or labels cannot be used: names disagree, no labels, NaN features..."""


class LabelError(DataError):
    """A label file or label column is malformed or holds labels outside the six classes."""


class ParameterError(DataError):
    """A hyper-parameter or option is outside its valid range (checked before any work).

    ``parameter`` : the name of the parameter the error is about, as a Python caller passes it
    (a field of ``HeadConfig``, ``DataConfig`` or ``SemiSettings``, or a keyword of the
    function raising it), or None. The message speaks of parameters, not of command-line
    flags; the command line adds the flag (:meth:`with_flag`, with
    :func:`mer_heads.config.parameter_flag`).
    """

    def __init__(self, message: str, parameter: str | None = None):
        super().__init__(message)
        self.parameter = parameter

    def with_flag(self, flag: str) -> str:
        """The message with `` (FLAG)`` before its final full stop, as the command line shows
        it: ``folds must be an integer >= 2; got 1 (--folds).``"""
        text = str(self)
        stop = "." if text.endswith(".") else ""
        return f"{text[:len(text) - len(stop)]} ({flag}){stop}"


class OutputError(MerHeadsError):
    """An output cannot be written (read-only folder, a file where a folder is expected, disk
    full), or would replace an earlier result without ``--overwrite``."""


class RunError(MerHeadsError):
    """A run directory is missing, incomplete, or does not match the stores given to it."""


SHOWN = 5
"""How many names an error message lists before ``...``."""


def listed(items, sep: str = ", ", most: int = SHOWN) -> str:
    """The first ``most`` of ``items`` (strings) joined by ``sep``, and `` ...`` if there are
    more: how a message names what it is about."""
    items = list(items)
    return sep.join(items[:most]) + (" ..." if len(items) > most else "")


def __getattr__(name: str) -> type:
    if name == "NotFittedError":
        from sklearn.exceptions import NotFittedError as SklearnNotFittedError

        cls = type("NotFittedError", (MerHeadsError, SklearnNotFittedError), {
            "__doc__": "An estimator was used before ``fit`` (scikit-learn's NotFittedError).",
            "__module__": __name__})
        globals()[name] = cls
        return cls
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


__all__ = ["DataError", "FingerprintMismatchError", "LabelError", "MerHeadsError",
           "NotFittedError", "OutputError", "ParameterError", "RunError", "listed"]
