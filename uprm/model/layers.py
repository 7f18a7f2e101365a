"""Small building blocks shared by the experts and heads."""
from __future__ import annotations

import math

import torch
from torch import nn


class FFN(nn.Module):
    """Linear -> GELU -> dropout -> Linear: the paper's "FFN"."""

    def __init__(self, d_in: int, d_hidden: int, d_out: int, dropout: float = 0.0):
        super().__init__()
        self.net = nn.Sequential(nn.Linear(d_in, d_hidden), nn.GELU(), nn.Dropout(dropout),
                                 nn.Linear(d_hidden, d_out))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net(x)


class ResidualFFN(nn.Module):
    """x + FFN(LN(x)): a pre-norm block that keeps the width."""

    def __init__(self, d: int, dropout: float = 0.0):
        super().__init__()
        self.norm = nn.LayerNorm(d)
        self.ffn = FFN(d, 2 * d, d, dropout)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x + self.ffn(self.norm(x))


def time_encoding(times_s: torch.Tensor, dim: int) -> torch.Tensor:
    """Sinusoidal encoding of absolute time in seconds: (...,) -> (..., dim).

    Periods run geometrically from 1 s to 2000 s so half-second steps stay distinct and a long video's
    position stays unambiguous.
    """
    half = dim // 2
    periods_s = 2000.0 ** (torch.arange(half, dtype=torch.float32, device=times_s.device) / max(half - 1, 1))
    angle = 2 * math.pi * times_s.float()[..., None] / periods_s  # (..., half)
    return torch.cat([angle.sin(), angle.cos()], dim=-1)


def masked_mean_max(x: torch.Tensor, mask: torch.Tensor, dim: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Mean and max of x over ``dim`` counting only ``mask`` entries (zeros where none are valid).

    x: (..., N, D) with dim pointing at N; mask: (..., N) bool.
    """
    m = mask.unsqueeze(-1).to(x.dtype)
    count = m.sum(dim=dim).clamp(min=1.0)
    mean = (x * m).sum(dim=dim) / count
    neg = torch.finfo(x.dtype).min
    mx = x.masked_fill(~mask.unsqueeze(-1), neg).amax(dim=dim)
    mx = torch.where(mask.any(dim=dim).unsqueeze(-1), mx, torch.zeros_like(mx))
    return mean, mx
