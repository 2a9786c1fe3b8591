"""The public Python API: every name of ``mer_heads.__all__`` imports, is documented, and
importing the package (or the command line) loads no heavy library."""

from __future__ import annotations

import subprocess
import sys

import pytest

import mer_heads


@pytest.mark.parametrize("name", [n for n in mer_heads.__all__ if n not in ("EMOTIONS",
                                                                             "__version__")])
def test_every_public_name_imports_and_has_a_docstring(name):
    value = getattr(mer_heads, name)
    assert (value.__doc__ or "").strip(), name
    assert name in dir(mer_heads)


def test_the_documented_names_are_there():
    from mer_heads import (CrossValidatedHead, HeadConfig, MerHeadsError,  # noqa: F401
                           MultimodalData, ablate, evaluate_files, fit_run, known_heads,
                           load_dataset, predict_run, register_head, robustness, score)

    assert known_heads()[0] == "attention"
    assert all(callable(x) for x in (CrossValidatedHead, HeadConfig, MultimodalData, ablate,
                                     evaluate_files, fit_run, load_dataset, predict_run,
                                     register_head, robustness, score))
    assert issubclass(MerHeadsError, Exception)
    with pytest.raises(AttributeError, match="no attribute 'nope'"):
        mer_heads.nope  # noqa: B018


@pytest.mark.parametrize("code,heavy", [
    ("import mer_heads.cli", ("numpy", "torch", "sklearn", "h5py")),
    ("import mer_heads; mer_heads.HeadConfig; mer_heads.known_heads()",
     ("numpy", "torch", "sklearn", "h5py")),
    ("import mer_heads; mer_heads.load_dataset", ("torch", "sklearn")),
])
def test_imports_stay_light(code, heavy):
    check = f"import sys; {code}; print(','.join(m for m in {heavy!r} if m in sys.modules))"
    out = subprocess.run([sys.executable, "-c", check], capture_output=True, text=True,
                         check=True).stdout.strip()
    assert out == ""
