"""ORE, the fine-grained Object-Relation Expert (paper section 3.1, eqs. 4-5).

Nodes are the entities of one time step (class embedding + normalised box + detector score + unary
predicate states + the entity's kinematics from its track: speed, velocity, track age, time still). Object masking by boxes: an entity outside ``object_mask`` or with an empty box has
no feature, no edge and no self loop, so it never contributes. Then L graph layers
    Z = D^-1/2 C D^-1/2 F,   F_{l+1} = sigma(Z W_l),   D_ii = sum_j C_ij,
an FFN per node (Y_s = FFN(F^(L))), and a masked mean/max pool to one token per step.

C is built from the per-predicate adjacencies as in Graph Transformer Networks (Yun et al., 2019, the
paper's GTL reference): each layer learns a soft selection over edge types,
    C = I + sum_r a_r A_r + sum_r b_r A_r^T,   (a, b) = softmax(theta_l) over 2R channels,
so "person holding knife" and its reverse are separate channels and direction is kept. Unary
predicates (lying, running: the diagonal of A_r) enter the node features instead of C, where a self
loop could only rescale the node.
"""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from uprm.model.config import UPRMConfig
from uprm.model.inputs import MOTION_FEATURES
from uprm.model.layers import FFN, masked_mean_max

BOX_FEATURES = 10  # x1, y1, x2, y2, w, h, cx, cy, area, score


def normalized_adjacency(c: torch.Tensor) -> torch.Tensor:
    """D^-1/2 C D^-1/2 with D_ii = sum_j C_ij (eq. 4); nodes of degree 0 get all-zero rows and columns.

    c: (..., K, K) non-negative.
    """
    deg = c.sum(dim=-1)  # (..., K)
    inv_sqrt = torch.where(deg > 0, deg.clamp(min=1e-12).rsqrt(), torch.zeros_like(deg))
    return inv_sqrt.unsqueeze(-1) * c * inv_sqrt.unsqueeze(-2)


class RelationGraphLayer(nn.Module):
    """One GTL layer: soft edge-type selection -> C, then eqs. 4-5."""

    def __init__(self, d_in: int, d_out: int, num_predicates: int):
        super().__init__()
        self.edge_logits = nn.Parameter(torch.zeros(2 * num_predicates))  # forward then reverse channels
        self.W = nn.Linear(d_in, d_out, bias=False)  # W_l of eq. 5

    def adjacency(self, relations: torch.Tensor, node_valid: torch.Tensor) -> torch.Tensor:
        """relations: (B, T, R, K, K), node_valid: (B, T, K) -> C: (B, T, K, K)."""
        r, k = relations.shape[2], relations.shape[-1]
        eye = torch.eye(k, dtype=relations.dtype, device=relations.device)
        off = relations * (1 - eye)  # unary states live in the node features
        w = self.edge_logits.softmax(dim=0)  # (2R,)
        c = torch.einsum("r,btrij->btij", w[:r], off) + torch.einsum("r,btrji->btij", w[r:], off)
        c = c + eye
        keep = node_valid.to(c.dtype)
        return c * keep.unsqueeze(-1) * keep.unsqueeze(-2)  # masked entities: no edges, no self loop

    def forward(self, f: torch.Tensor, relations: torch.Tensor, node_valid: torch.Tensor) -> torch.Tensor:
        z = normalized_adjacency(self.adjacency(relations, node_valid)) @ f  # (B, T, K, d_in): eq. 4
        return F.relu(self.W(z))  # eq. 5, sigma = ReLU


class ObjectRelationExpert(nn.Module):
    def __init__(self, config: UPRMConfig):
        super().__init__()
        n, d, r = config.ore_node_dim, config.d_model, config.num_predicates
        self.class_embed = nn.Embedding(config.num_object_classes, n)
        # at the scale of the measured features' projections: with the default N(0, 1) the class alone
        # would outweigh a box, a speed or a contrast tenfold, and the model would learn them slowly
        nn.init.normal_(self.class_embed.weight, std=0.02)
        self.box_in = nn.Linear(BOX_FEATURES, n)
        self.unary_in = nn.Linear(r, n)
        self.motion_in = nn.Linear(len(MOTION_FEATURES), n)
        self.node_norm = nn.LayerNorm(n)
        self.layers = nn.ModuleList(RelationGraphLayer(n, n, r) for _ in range(config.ore_graph_layers))
        self.ffn = FFN(n, 2 * n, n, config.dropout)
        self.out = nn.Sequential(nn.Linear(2 * n, d), nn.LayerNorm(d))  # [mean, max] over entities
        self.null = nn.Parameter(torch.randn(d) * 0.02)  # the token of a step without any entity

    @staticmethod
    def valid_nodes(object_box: torch.Tensor, object_mask: torch.Tensor) -> torch.Tensor:
        """Object masking by boxes: (B, T, K) True for real entities with a non-empty box."""
        w = object_box[..., 2] - object_box[..., 0]
        h = object_box[..., 3] - object_box[..., 1]
        return object_mask & (w > 0) & (h > 0)

    def forward(self, object_class: torch.Tensor, object_box: torch.Tensor, object_score: torch.Tensor,
                object_mask: torch.Tensor, relations: torch.Tensor, step_mask: torch.Tensor,
                object_motion: torch.Tensor | None = None) -> torch.Tensor:
        valid = self.valid_nodes(object_box, object_mask) & step_mask.unsqueeze(-1)  # (B, T, K)
        x1, y1, x2, y2 = object_box.unbind(-1)
        w, h = x2 - x1, y2 - y1
        box = torch.stack([x1, y1, x2, y2, w, h, (x1 + x2) / 2, (y1 + y2) / 2, w * h, object_score], -1)
        unary = torch.diagonal(relations, dim1=-2, dim2=-1).transpose(-1, -2)  # (B, T, R, K) -> (B, T, K, R)
        f = self.class_embed(object_class) + self.box_in(box) + self.unary_in(unary)  # (B, T, K, n)
        if object_motion is not None:
            f = f + self.motion_in(object_motion)
        f = self.node_norm(f) * valid.unsqueeze(-1)
        for layer in self.layers:
            f = layer(f, relations, valid)
        f = self.ffn(f)  # Y_s = FFN(F^(L)), per node
        mean, mx = masked_mean_max(f, valid, dim=2)  # (B, T, n) each
        pooled = self.out(torch.cat([mean, mx], dim=-1))  # (B, T, d)
        out = torch.where(valid.any(dim=-1, keepdim=True), pooled, self.null.expand_as(pooled))
        return out * step_mask.unsqueeze(-1)
