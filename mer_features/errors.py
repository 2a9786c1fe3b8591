"""Exceptions raised by :mod:`mer_features`.

Every error the package raises on purpose derives from :class:`MerFeaturesError`, so a caller
can catch the package's failures without catching programming errors.
"""


class MerFeaturesError(Exception):
    """Root of every error raised on purpose by mer_features."""


class ParameterError(MerFeaturesError, ValueError):
    """An option has a value out of its range, of the wrong type, or that does not fit the
    others (fp16 on a CPU), found before any work.

    The message names the Python parameter in backticks (``\`seed\` must be an integer >= 0;
    got -1.``); ``parameter`` is its name. The command line shows the same message with the
    flag in place of the parameter (:func:`mer_features.options.with_flags`).
    """

    def __init__(self, message: str, parameter: str | None = None):
        super().__init__(message)
        self.parameter = parameter

    def __reduce__(self):
        return (type(self), (str(self), self.parameter))


class ManifestError(MerFeaturesError, ValueError):
    """A manifest is missing, malformed, or names clips that cannot be used."""


class StoreError(MerFeaturesError):
    """A feature store cannot be opened, read or written."""


class FingerprintMismatchError(StoreError):
    """A store holds features made with another configuration than the one asked for."""


class StoreLockedError(StoreError):
    """Another process is writing the same store."""


class EncoderError(MerFeaturesError):
    """An encoder is unknown, cannot be loaded, or was configured wrongly."""


class ClipFailedError(MerFeaturesError):
    """Raised with ``fail_fast`` at the first clip that fails."""


class WorkerDiedError(MerFeaturesError):
    """A decoding worker process died (killed, or crashed inside a native decoder)."""


class ExtractionInterrupted(KeyboardInterrupt):
    """An extraction stopped by Ctrl-C or SIGTERM after closing its store.

    A KeyboardInterrupt, so callers that catch that still do; ``store`` is the store's path,
    ``kept`` the number of clips it holds (every clip finished before the interruption, from
    this run and earlier ones), ``extracted`` those this run added.
    """

    def __init__(self, store: object, kept: int, extracted: int):
        super().__init__(f"interrupted: {kept} clips kept in {store}")
        self.store = store
        self.kept = kept
        self.extracted = extracted


class ClipError(MerFeaturesError):
    """One clip cannot be processed; the run records it and goes on.

    Parameters
    ----------
    stage : str
        Where it failed: ``"decode"``, ``"encode"``, ...
    reason : str
        What went wrong, in words a user can act on.
    """

    def __init__(self, stage: str, reason: str):
        super().__init__(f"{stage}: {reason}")
        self.stage = stage
        self.reason = reason

    def __reduce__(self):  # survives the trip back from a worker process
        return (type(self), (self.stage, self.reason))


def first_line(e: BaseException) -> str:
    """The first line of an exception's message ("" when it has none), for one-line errors."""
    text = str(e).strip()
    return text.splitlines()[0].strip() if text else ""
