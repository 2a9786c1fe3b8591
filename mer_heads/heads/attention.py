"""``attention``: the MER 2023 baseline fusion.

Per-modality MLP encoders (d -> 2H -> H), an attention MLP over the concatenated hidden vectors
giving one weight per modality, the weighted sum, then the emotion and valence outputs. Unlike
the baseline, the weights go through a softmax in which absent modalities get a logit of -inf,
so the fusion renormalises over the modalities a clip has instead of mixing in an encoding of
zeros. With one modality there is nothing to weigh: its hidden vector is the fusion.
"""

from __future__ import annotations

from mer_heads.heads.neural import NeuralHead
from mer_heads.heads.registry import register_head


@register_head
class AttentionHead(NeuralHead):
    name = "attention"
    help = "MER 2023 baseline"

    def build(self, stack, widths: list[int]) -> None:
        from mer_heads.heads.stack import StackedLinear, StackedMLP

        m, h = len(widths), stack.hidden
        stack.attention = (StackedMLP(stack.n_models, sum(widths), (2 * h, h), stack.p)
                           if m > 1 else None)
        stack.attention_out = StackedLinear(stack.n_models, h, m) if m > 1 else None

    def fuse(self, stack, hidden: list, present):
        import torch

        if stack.attention is None:
            return hidden[0]
        stacked = torch.stack(hidden, dim=2)                                    # (F, B, M, H)
        logits = stack.attention_out(stack.attention(torch.cat(hidden, dim=-1)))
        weights = torch.softmax(logits.float().masked_fill(~present, float("-inf")), dim=-1)
        # Clips with no modality at all are never trained on; their NaN row becomes zeros.
        weights = weights.nan_to_num(0.0)
        return torch.einsum("fbm,fbmh->fbh", weights.to(stacked.dtype), stacked)
