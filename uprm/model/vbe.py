"""VBE, the fine-grained Visual-Background Expert (paper section 3.1): a light FFN stack per step.

The paper feeds SAM tokens; offline we feed the perception engineer's background vector (scene
feature + person-mask occupancy grid, ``UPRMConfig.d_bg``). y' = FFN(y) per time step.
"""
from __future__ import annotations

import torch
from torch import nn

from uprm.model.config import UPRMConfig
from uprm.model.layers import ResidualFFN


class VisualBackgroundExpert(nn.Module):
    def __init__(self, config: UPRMConfig):
        super().__init__()
        d = config.d_model
        self.inp = nn.Sequential(nn.LayerNorm(config.d_bg), nn.Linear(config.d_bg, d))
        self.blocks = nn.Sequential(*(ResidualFFN(d, config.dropout) for _ in range(config.vbe_layers)))
        self.norm = nn.LayerNorm(d)

    def forward(self, background: torch.Tensor, step_mask: torch.Tensor) -> torch.Tensor:
        """(B, T, D_bg) -> (B, T, d)."""
        return self.norm(self.blocks(self.inp(background))) * step_mask.unsqueeze(-1)
