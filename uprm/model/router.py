"""The Trade-off Aware Expert Router (paper section 3.2, eq. 6).

    R(h) = softmax(FFN(h)) over the N = 3 fine experts (hpe, ore, vbe),   G = max_i R(h)_i,
    z = sum_i R(h)_i E_i(h) + (1 - G) E_g(h).

What h is: per time step t, h_t = [LN([E_hpe, E_ore, E_vbe, E_g]_t), presence_t], the four expert
outputs concatenated and layer-normalised, plus three 0/1 flags saying whether the step has any
person pose, any entity, a background vector. Why: the router must weigh what each expert says at
this step, not only what the video looks like; the flags tell it when a fine expert has nothing to
say (the paper's Fig. 3: pose in 41-46% of samples, objects 28-32%, background 22-31%).

The router FFN emits four logits x = [x_hpe, x_ore, x_vbe, x_g]: the three fine ones give R, and x_g
is the coarse expert's logit. x_g enters L_z (eq. 7) and is the coarse weight of the basic-MoE
router (no_ptr): one router serves both modes, so the ablation switches on a built model.

Masking: a fine expert that is ablated (or, with ``mask_absent_experts``, has no evidence at the step)
gets R_i = 0 by dropping its logit from the softmax. With no fine expert left, G = 0 and z = E_g.
"""
from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn

from uprm.model.config import UPRMConfig
from uprm.model.layers import FFN

NUM_FINE = 3


@dataclass
class Gates:
    fine_weights: torch.Tensor  # (B, T, 3): R (PTR) or the fine part of the 4-way softmax (no_ptr)
    coarse_share: torch.Tensor  # (B, T): 1 - G (PTR) or the coarse weight of the 4-way softmax (no_ptr)
    z: torch.Tensor  # (B, T, d)


class TradeoffRouter(nn.Module):
    def __init__(self, config: UPRMConfig):
        super().__init__()
        d = config.d_model
        self.norm = nn.LayerNorm(4 * d)
        self.ffn = FFN(4 * d + NUM_FINE, config.router_hidden, NUM_FINE + 1, config.dropout)

    def forward(self, experts: torch.Tensor, presence: torch.Tensor) -> torch.Tensor:
        """experts: (B, T, 4, d) in order (hpe, ore, vbe, cve); presence: (B, T, 3) -> logits (B, T, 4)."""
        b, t = experts.shape[:2]
        h = torch.cat([self.norm(experts.reshape(b, t, -1)), presence.to(experts.dtype)], dim=-1)  # (B, T, 4d+3)
        return self.ffn(h)


def gate(logits: torch.Tensor, experts: torch.Tensor, fine_enabled: torch.Tensor, ptr: bool = True) -> Gates:
    """Eq. 6 (ptr=True) or a basic MoE softmax over all four experts (ptr=False).

    logits: (B, T, 4) = [x_hpe, x_ore, x_vbe, x_g]; experts: (B, T, 4, d) = [E_hpe, E_ore, E_vbe, E_g];
    fine_enabled: bool, broadcastable to (B, T, 3): which fine experts may receive weight.
    """
    fine_enabled = fine_enabled.expand(logits.shape[:-1] + (NUM_FINE,))
    fine, coarse = experts[..., :NUM_FINE, :], experts[..., NUM_FINE, :]
    if ptr:
        masked = logits[..., :NUM_FINE].masked_fill(~fine_enabled, float("-inf"))
        any_fine = fine_enabled.any(dim=-1, keepdim=True)
        # a step with no fine expert: softmax over nothing -> R = 0, hence G = 0 and z = E_g
        # (finite stand-in logits there, so neither the softmax nor its gradient sees an all -inf row)
        r = torch.where(any_fine, masked, torch.zeros_like(masked)).softmax(dim=-1) * any_fine
        share = 1.0 - r.amax(dim=-1)  # 1 - G
        z = (r.unsqueeze(-1) * fine).sum(dim=-2) + share.unsqueeze(-1) * coarse
        return Gates(r, share, z)
    enabled4 = torch.cat([fine_enabled, torch.ones_like(fine_enabled[..., :1])], dim=-1)  # coarse always on
    w = logits.masked_fill(~enabled4, float("-inf")).softmax(dim=-1)  # (B, T, 4)
    z = (w.unsqueeze(-1) * experts).sum(dim=-2)
    return Gates(w[..., :NUM_FINE], w[..., NUM_FINE], z)
