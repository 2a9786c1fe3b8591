"""``fbp``: factorised bilinear pooling.

MFB (Yu et al. 2017), as the MER-SEMI runner-up used it, generalised to M modalities:
per-modality encoders, each projected to k*H factors, multiplied elementwise across modalities
(an absent modality contributes the multiplicative identity), sum-pooled over the k factors,
signed square root, L2-normalised.
"""

from __future__ import annotations

import math

from mer_heads.heads.neural import NeuralHead
from mer_heads.heads.registry import register_head

FACTORS = 4
"""k, the factors per hidden unit."""


@register_head
class FbpHead(NeuralHead):
    name = "fbp"
    help = "factorised bilinear pooling"

    def build(self, stack, widths: list[int]) -> None:
        from torch import nn

        from mer_heads.heads.stack import StackedLinear

        stack.factors = nn.ModuleList(
            StackedLinear(stack.n_models, w, FACTORS * stack.hidden) for w in widths)

    def fuse(self, stack, hidden: list, present):
        import torch
        from torch import nn

        from mer_heads.heads.stack import dropout

        product = torch.ones(())
        for i, (h, factor) in enumerate(zip(hidden, stack.factors)):
            z = factor(h)                                                       # (F, B, k*H)
            product = product * torch.where(present[..., i:i + 1], z, torch.ones_like(z))
        product = dropout(product, stack.p, stack.training)
        f, b, _ = product.shape
        pooled = product.reshape(f, b, stack.hidden, FACTORS).sum(-1)
        pooled = torch.sign(pooled) * torch.sqrt(pooled.abs() + 1e-6)
        # Unit-RMS rather than unit-norm entries, so the heads start at the usual scale.
        return nn.functional.normalize(pooled, dim=-1) * math.sqrt(stack.hidden)
