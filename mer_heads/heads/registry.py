"""The head registry: every head the toolkit can cross-validate, by name.

A head is a small object that declares what it is (``name``, ``family``, a ``help`` phrase, the
inputs it takes and the hyper-parameters of :class:`~mer_heads.config.HeadConfig` it reads) and
implements its family's hooks. Two families exist:

* ``neural`` (:class:`~mer_heads.heads.neural.NeuralHead`): the folds x seeds models train
  together as one stacked network; a head only defines its fusion layers;
* ``sklearn`` (:class:`~mer_heads.heads.sklearn.SklearnHead`): one scikit-learn classifier
  (and valence regressor) per fold and seed; a head only says which estimators.

The command line's ``--model`` choices and help, and the heads each option's help names, are
generated from this registry. Adding a head is one new file in this package (a subclass of one
of the two families, decorated with :func:`register_head`) plus its module's name in
:data:`BUILT_IN`; code outside the package can call :func:`register_head` too. The built-in
heads are imported on the registry's first use, and importing one is cheap: torch and
scikit-learn load when a head is fitted.
"""

from __future__ import annotations

from contextlib import AbstractContextManager
from importlib import import_module
from typing import TYPE_CHECKING, Any, BinaryIO, ClassVar, TypeVar

from mer_heads.errors import ParameterError

if TYPE_CHECKING:
    from mer_heads.config import HeadConfig
    from mer_heads.data.dataset import MultimodalData
    from mer_heads.state import FittedState, TrainedModels

NEURAL = "neural"
SKLEARN = "sklearn"
FAMILIES = (NEURAL, SKLEARN)
BUILT_IN = ("attention", "concat", "fbp", "logreg", "svm")
"""Modules of ``mer_heads.heads`` that register the built-in heads, in ``--model``'s order."""


class Head:
    """What every head declares; a family's base class adds how its models fit and predict.

    Class attributes
    ----------------
    name : the ``--model`` name (lower case, no spaces).
    help : a short phrase for ``--model``'s help, e.g. ``"MER 2023 baseline"`` ("" if none).
    family : ``neural`` or ``sklearn`` (set by the family's base class).
    kind : the family in words, for messages (``neural``, ``scikit-learn``).
    inputs : the input kinds it takes (``utterance``, ``frames``).
    params : the :class:`~mer_heads.config.HeadConfig` fields it reads besides the protocol's
        (model, folds, seed, seeds).
    model_file : where a run directory keeps its fitted models.
    models_attribute : the estimator's attribute holding them (``stack_``, ``estimators_``).

    The family's base class implements the hooks below. None of them changes the estimator
    or the state it is given: ``fit`` returns what it trained
    (:class:`~mer_heads.state.TrainedModels`), and
    :class:`~mer_heads.protocol.CrossValidatedHead` keeps it in its
    :class:`~mer_heads.state.FittedState`.
    """

    name: ClassVar[str]
    help: ClassVar[str] = ""
    family: ClassVar[str]
    kind: ClassVar[str]
    inputs: ClassVar[tuple[str, ...]]
    params: ClassVar[tuple[str, ...]]
    model_file: ClassVar[str]
    models_attribute: ClassVar[str]

    def __repr__(self) -> str:
        return f"<{self.family} head '{self.name}'>"

    def check_runtime(self, config: HeadConfig) -> None:
        """Refuse, before any work, a runtime the head cannot use (a device not there)."""

    def fit(self, config: HeadConfig, state: FittedState, data: MultimodalData,
            train_rows: list, val_rows: list, fold_labels: Any) -> TrainedModels:
        """Train the state's F models: model f learns from the rows ``train_rows[f]`` of
        ``data`` (labels ``fold_labels[fold]`` when given, else ``data.labels``) and is
        validated on ``val_rows[f]``."""
        raise NotImplementedError

    def predictor(self, config: HeadConfig, state: FittedState, data: MultimodalData,
                  batch: int) -> AbstractContextManager:
        """A context yielding ``predict(part, rows=None, *, mean=False, valence=True)`` (see
        :meth:`NeuralHead.predictor <mer_heads.heads.neural.NeuralHead.predictor>`)."""
        raise NotImplementedError

    def write_models(self, models: Any, file: BinaryIO) -> None:
        """Serialise the fitted ``models`` into the binary ``file`` (a run's ``model_file``)."""
        raise NotImplementedError

    def read_models(self, file: BinaryIO, config: HeadConfig, state: FittedState) -> Any:
        """The models :meth:`write_models` wrote, for ``state`` (its other fields set)."""
        raise NotImplementedError

    def layer_weights(self, state: FittedState) -> dict[str, Any]:
        """Learned layer weights (F, L) per weighed modality of the fitted models (none)."""
        return {}


_HEADS: dict[str, Head] = {}
_LOADED: list[bool] = []
H = TypeVar("H", bound=type)


def _heads() -> dict[str, Head]:
    """The registry, with the built-in heads loaded first (so they keep their names and order
    whatever registers next)."""
    if not _LOADED:
        _LOADED.append(True)
        for name in BUILT_IN:
            import_module(f"{__package__}.{name}")
    return _HEADS


def register_head(cls: H) -> H:
    """Register the head class ``cls`` (usable as a class decorator); returns ``cls``.

    A name registered twice, or a class that is not a subclass of a family's base class, is
    refused with ``ValueError``.
    """
    registered = _heads()
    head = cls()
    name = getattr(head, "name", None)
    if not isinstance(head, Head) or getattr(head, "family", None) not in FAMILIES:
        raise ValueError(f"{cls.__qualname__} is not a head: subclass "
                         "mer_heads.heads.NeuralHead or mer_heads.heads.SklearnHead.")
    if not isinstance(name, str) or not name or name != name.strip().lower() or " " in name:
        raise ValueError(f"{cls.__qualname__}.name must be a lower-case word; got {name!r}.")
    if name in registered:
        other = type(registered[name])
        raise ValueError(f"A head named '{name}' is already registered "
                         f"({other.__module__}.{other.__qualname__}); choose another name.")
    registered[name] = head
    return cls


def get_head(name: str) -> Head:
    """The registered head called ``name``; an unknown name raises :class:`ParameterError`
    listing the known ones."""
    try:
        return _heads()[name]
    except (KeyError, TypeError):
        raise ParameterError(f"model must be one of {', '.join(known_heads())}; got {name!r}.",
                             "model") from None


def known_heads(family: str | None = None) -> tuple[str, ...]:
    """Names of the registered heads (of ``family`` only, if given), in registration order."""
    return tuple(n for n, h in _heads().items() if family is None or h.family == family)


def heads_using(param: str) -> tuple[str, ...]:
    """Names of the heads that read the hyper-parameter ``param`` (e.g. ``C``)."""
    return tuple(n for n, h in _heads().items() if param in h.params)


__all__ = ["BUILT_IN", "FAMILIES", "NEURAL", "SKLEARN", "Head", "get_head", "heads_using",
           "known_heads", "register_head"]
