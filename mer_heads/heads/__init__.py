"""The heads: a registry of named heads in two families (see :mod:`mer_heads.heads.registry`).

One file per head (``attention.py``, ``concat.py``, ``fbp.py``, ``logreg.py``, ``svm.py``), each a
subclass of a family's base class: :class:`NeuralHead` (``neural.py``: the stacked network of
``stack.py``, trained by ``training.py``) or :class:`SklearnHead` (``sklearn.py``).
"""

from importlib import import_module

from mer_heads.heads.registry import (BUILT_IN, FAMILIES, NEURAL, SKLEARN, Head, get_head,
                                      heads_using, known_heads, register_head)

_FAMILIES = {"NeuralHead": "neural", "SklearnHead": "sklearn"}

__all__ = ["BUILT_IN", "FAMILIES", "NEURAL", "SKLEARN", "Head", "NeuralHead", "SklearnHead",
           "get_head", "heads_using", "known_heads", "register_head"]


def __getattr__(name: str):
    if name in _FAMILIES:
        return getattr(import_module(f"{__name__}.{_FAMILIES[name]}"), name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
