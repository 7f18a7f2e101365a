"""CVE, the Coarse-grained Video Expert (paper section 3.1): T_g = FFN(global video feature) per step.

The paper feeds LanguageBind features; offline we feed the mc3_18 clip feature + fight probability
(``UPRMConfig.d_coarse``). A user with LanguageBind features sets d_coarse to their size.
"""
from __future__ import annotations

import torch
from torch import nn

from uprm.model.config import UPRMConfig
from uprm.model.layers import FFN


class CoarseVideoExpert(nn.Module):
    def __init__(self, config: UPRMConfig):
        super().__init__()
        d = config.d_model
        self.norm = nn.LayerNorm(config.d_coarse)  # clip features and a probability live on different scales
        self.ffn = FFN(config.d_coarse, 2 * d, d, config.dropout)

    def forward(self, coarse: torch.Tensor, step_mask: torch.Tensor) -> torch.Tensor:
        """(B, T, D_coarse) -> (B, T, d)."""
        return self.ffn(self.norm(coarse)) * step_mask.unsqueeze(-1)
