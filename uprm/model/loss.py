"""The Gated Physical-world Trade-off Loss (eq. 7) and the per-step threat loss.

    L_z = (1/T) sum_t ( log( sum_j exp(x_j^(t)) + exp(x_g^(t)) ) )^2

x_j^(t) is the router logit of fine expert j at time step t and x_g^(t) the router's coarse logit
(the four outputs of the router FFN, see ``uprm.model.router``). Sums run over the fine experts that
may receive weight at the step (ablated or evidence-less ones are left out, as in the softmax they do
not enter); T counts the valid (non-padding) steps of the whole batch. Like ST-MoE's router z-loss it
keeps the log-partition near zero, so no expert's logit can grow large and dominate.

Total loss L = L_ce + alpha * L_z + threat_loss_weight * L_threat, where L_threat is the binary cross
entropy of the per-step threat logits against per-step targets in [0, 1] (only when targets are given).
"""
from __future__ import annotations

import torch
import torch.nn.functional as F

from uprm.model.errors import InputError


def tradeoff_loss(logits: torch.Tensor, fine_enabled: torch.Tensor, step_mask: torch.Tensor) -> torch.Tensor:
    """L_z of eq. 7. logits: (B, T, 4) = [x_hpe, x_ore, x_vbe, x_g]; fine_enabled: bool broadcastable to
    (B, T, 3); step_mask: (B, T) bool. Returns a scalar."""
    fine_enabled = fine_enabled.expand(logits.shape[:-1] + (3,))
    enabled = torch.cat([fine_enabled, torch.ones_like(fine_enabled[..., :1])], dim=-1)  # x_g always counts
    lse = logits.masked_fill(~enabled, float("-inf")).logsumexp(dim=-1)  # (B, T)
    m = step_mask.to(lse.dtype)
    return (lse.square() * m).sum() / m.sum().clamp(min=1.0)


def threat_loss(threat_logits: torch.Tensor, targets: torch.Tensor, step_mask: torch.Tensor) -> torch.Tensor:
    """Mean binary cross entropy over valid steps. threat_logits, targets: (B, T); step_mask: (B, T)."""
    if targets.shape != threat_logits.shape:
        raise InputError(f"threat_targets must be (B, T) = {tuple(threat_logits.shape)}, got {tuple(targets.shape)}")
    targets = targets.to(threat_logits.dtype)
    if bool(((targets < 0) | (targets > 1)).any()):
        raise InputError("threat_targets must lie in [0, 1] (1 = threat at that step)")
    per_step = F.binary_cross_entropy_with_logits(threat_logits, targets, reduction="none")
    m = step_mask.to(per_step.dtype)
    return (per_step * m).sum() / m.sum().clamp(min=1.0)
