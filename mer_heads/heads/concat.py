"""``concat``: early fusion.

The standardised features (zeroed where absent) concatenated with one presence indicator per
modality, then an MLP (2H -> H) and the emotion and valence outputs. With frame input each
modality first goes through its temporal encoder.
"""

from __future__ import annotations

from mer_heads.heads.neural import NeuralHead
from mer_heads.heads.registry import register_head


@register_head
class ConcatHead(NeuralHead):
    name = "concat"
    encodes = False

    def build(self, stack, widths: list[int]) -> None:
        from mer_heads.heads.stack import StackedMLP

        h = stack.hidden
        stack.mlp = StackedMLP(stack.n_models, sum(widths) + len(widths), (2 * h, h), stack.p)

    def fuse(self, stack, hidden: list, present):
        import torch

        return stack.mlp(torch.cat([*hidden, present.to(hidden[0].dtype)], dim=-1))
