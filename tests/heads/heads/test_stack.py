"""Stacked heads: F models in one tensor program behave as F independent models, and absent
modalities are masked, not read."""

from __future__ import annotations

import pytest
import torch

from mer_heads.heads import known_heads
from mer_heads.heads.stack import StackedHead

MODELS = known_heads("neural")

DIMS = [7, 5, 4]


def _inputs(f: int, b: int, frames: bool = False, seed: int = 0):
    g = torch.Generator().manual_seed(seed)
    if frames:
        xs = [torch.randn(f, b, 6, d, generator=g) for d in DIMS]
        masks = [torch.rand(f, b, 6, generator=g) < 0.8 for _ in DIMS]
        for m in masks:
            m[..., 0] = True
    else:
        xs = [torch.randn(f, b, d, generator=g) for d in DIMS]
        masks = None
    present = torch.rand(f, b, len(DIMS), generator=g) < 0.7
    present[..., 0] = True
    return xs, present, masks


@pytest.mark.parametrize("model,input", [(m, "utterance") for m in MODELS]
                         + [("attention", "frames"), ("concat", "frames")])
def test_stack_equals_independent_models(model, input):
    stack = StackedHead(3, DIMS, model=model, input=input, hidden=8, dropout=0.3)
    stack.reset_parameters(torch.Generator().manual_seed(1))
    stack.eval()
    xs, present, masks = _inputs(3, 10, input == "frames")
    logits, valence = stack(xs, present, masks)
    for f in range(3):
        one = StackedHead(1, DIMS, model=model, input=input, hidden=8, dropout=0.3).eval()
        one.load_state_dict({k: v[f:f + 1] for k, v in stack.state_dict().items()})
        lo, va = one([x[f:f + 1] for x in xs], present[f:f + 1],
                     None if masks is None else [m[f:f + 1] for m in masks])
        torch.testing.assert_close(lo[0], logits[f])
        torch.testing.assert_close(va[0], valence[f])


def test_gradients_of_one_model_do_not_touch_the_others():
    stack = StackedHead(3, DIMS, hidden=8)
    stack.reset_parameters(torch.Generator().manual_seed(0))
    xs, present, _ = _inputs(3, 10)
    logits, valence = stack(xs, present)
    (logits[1].sum() + valence[1].sum()).backward()
    for name, p in stack.named_parameters():
        assert p.grad[0].abs().sum() == 0 and p.grad[2].abs().sum() == 0, name
        assert p.grad[1].abs().sum() > 0, name


@pytest.mark.parametrize("model,input", [(m, "utterance") for m in MODELS]
                         + [("attention", "frames"), ("fbp", "frames")])
def test_absent_modalities_do_not_change_the_output(model, input):
    stack = StackedHead(2, DIMS, model=model, input=input, hidden=8).eval()
    stack.reset_parameters(torch.Generator().manual_seed(0))
    xs, present, masks = _inputs(2, 12, input == "frames")
    logits, valence = stack(xs, present, masks)
    noisy = [x + 100 * (~present[..., i]).reshape(*present.shape[:2], *([1] * (x.dim() - 2)))
             for i, x in enumerate(xs)]
    logits2, valence2 = stack(noisy, present, masks)
    torch.testing.assert_close(logits, logits2)
    torch.testing.assert_close(valence, valence2)


def test_attention_renormalises_over_present_modalities():
    stack = StackedHead(1, DIMS, hidden=8).eval()
    stack.reset_parameters(torch.Generator().manual_seed(0))
    xs, _, _ = _inputs(1, 4)
    only_first = torch.tensor([[[True, False, False]] * 4])
    hidden = [enc(x) for enc, x in zip(stack.encoders, xs)]
    logits, _ = stack(xs, only_first)
    torch.testing.assert_close(logits, stack.emotion(hidden[0]))


def test_bf16_matches_fp32_closely():
    stack = StackedHead(2, DIMS, hidden=8).eval()
    stack.reset_parameters(torch.Generator().manual_seed(0))
    xs, present, _ = _inputs(2, 16)
    ref, _ = stack(xs, present)
    stack.set_compute_dtype(torch.bfloat16)
    low, _ = stack(xs, present)
    assert low.dtype == torch.bfloat16
    torch.testing.assert_close(low.float(), ref, atol=0.05, rtol=0.05)
