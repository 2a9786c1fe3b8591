"""Exceptions raised by :mod:`mer_heads`.

Every error the package raises on purpose derives from :class:`MerHeadsError`, so a caller (the
CLI included) can catch the package's failures without catching programming errors. Messages
say what is wrong, where, and what to do.
"""


class MerHeadsError(Exception):
    """Root of every error raised on purpose by mer_heads."""


class DataError(MerHeadsError, ValueError):
    """Feature stores or labels cannot be used: names disagree, no labels, NaN features..."""


class LabelError(DataError):
    """A label file or label column is malformed or holds labels outside the six classes."""


class ParameterError(DataError):
    """A hyper-parameter or option is outside its valid range (checked before any work)."""


class OutputError(MerHeadsError):
    """An output cannot be written (read-only folder, a file where a folder is expected, disk
    full), or would replace an earlier result without ``--overwrite``."""


class RunError(MerHeadsError):
    """A run directory is missing, incomplete, or does not match the stores given to it."""


class FingerprintMismatchError(RunError):
    """Stores given to ``predict`` were made with another configuration than the run's."""


class NotFittedError(MerHeadsError, AttributeError):
    """An estimator was used before ``fit``."""
