"""HPE, the fine-grained Human-Pose Expert (paper section 3.1, eqs. 1-3).

Per person, a pose-aware graph attention over the COCO skeleton refines joint features:
    beta_kl = softmax_{l in M(k)} ((V g_k) . (V g_l) / sqrt(p)),   g_hat_k = sum_l beta_kl g_l,
    g'_k = ReLU(U [g_hat_k, g_k]).
The paper writes V for both matrices, but they cannot be one matrix (p x p vs p x 2p): U is the second.
M(k) is the skeleton neighbourhood of joint k *plus k itself*: the self loop keeps the softmax defined
when every neighbour is undetected (occluded joints are dropped from M) and lets a joint keep its own
feature in g_hat, as in GAT. People are pooled per time step into one pose token, then the video
(coarse) tokens attend to the pose tokens, T_c = softmax(Q_v K_t^T / sqrt(d_h)) V_t, followed by
    T_c' = LN(T_c + MSA(T_c)),   T_{c+1} = LN(T_c' + FFN(T_c')).
With ``hpe_window_s`` > 0 both attentions are restricted to steps within that many seconds and carry no
absolute time (see UPRMConfig.hpe_window_s); 0 keeps the paper's whole-video form.
"""
from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn

from uprm.evidence import NUM_JOINTS, SKELETON_EDGES
from uprm.model.config import UPRMConfig
from uprm.model.layers import FFN, masked_mean_max, time_encoding

JOINT_FEATURES = 5  # x, y (frame-normalised), score, x and y relative to the person's centre and size
FRAME_POSITION_FEATURES = 2  # the frame-normalised x, y, dropped when config.hpe_frame_position is False


def skeleton_adjacency(num_joints: int = NUM_JOINTS, edges=SKELETON_EDGES, self_loops: bool = True) -> torch.Tensor:
    """(J, J) bool: True where l is in the neighbourhood M(k) of k (undirected edges, optional self loops)."""
    adj = torch.zeros(num_joints, num_joints, dtype=torch.bool)
    for a, b in edges:
        adj[a, b] = adj[b, a] = True
    if self_loops:
        adj |= torch.eye(num_joints, dtype=torch.bool)
    return adj


class PoseGraphAttention(nn.Module):
    """One layer of eq. 1 and the joint update, over a batch of skeletons."""

    def __init__(self, p: int):
        super().__init__()
        self.p = p
        self.V = nn.Linear(p, p, bias=False)  # V of eq. 1
        self.U = nn.Linear(2 * p, p, bias=False)  # the "V" of g'_k = ReLU(V[g_hat_k, g_k])

    def forward(self, g: torch.Tensor, adjacency: torch.Tensor, joint_valid: torch.Tensor,
                return_attention: bool = False):
        """g: (N, J, p) joint features; adjacency: (J, J) bool incl. self loops; joint_valid: (N, J) bool."""
        vg = self.V(g)  # (N, J, p)
        scores = vg @ vg.transpose(-1, -2) / math.sqrt(self.p)  # (N, J_k, J_l)
        eye = torch.eye(g.shape[1], dtype=torch.bool, device=g.device)
        allowed = adjacency.unsqueeze(0) & (joint_valid.unsqueeze(1) | eye)  # undetected l leave M(k)
        beta = scores.masked_fill(~allowed, float("-inf")).softmax(dim=-1)  # (N, J_k, J_l)
        g_hat = beta @ g  # (N, J, p): sum_l beta_kl g_l
        out = F.relu(self.U(torch.cat([g_hat, g], dim=-1)))
        return (out, beta) if return_attention else out


class HumanPoseExpert(nn.Module):
    def __init__(self, config: UPRMConfig):
        super().__init__()
        p, d = config.hpe_joint_dim, config.d_model
        self.num_heads = config.num_heads
        self.register_buffer("adjacency", skeleton_adjacency(), persistent=False)
        self.frame_position = bool(config.hpe_frame_position)
        self.joint_in = nn.Linear(JOINT_FEATURES - (0 if self.frame_position else FRAME_POSITION_FEATURES), p)
        self.joint_embed = nn.Parameter(torch.randn(NUM_JOINTS, p) * 0.02)  # which joint this node is
        self.graph = nn.ModuleList(PoseGraphAttention(p) for _ in range(config.hpe_graph_layers))
        self.person_out = nn.Linear(2 * p, d)  # [mean, max] over joints
        self.step_out = nn.Linear(2 * d, d)  # [mean, max] over people: one aggressor in a crowd survives max
        self.video_in = nn.Sequential(nn.LayerNorm(config.d_coarse), nn.Linear(config.d_coarse, d))
        # absolute time only in the whole-video form; windowed attention has none (no unused weights)
        self.time_in = nn.Linear(config.time_dim, d) if config.hpe_window_s == 0 else None
        self.time_dim = config.time_dim
        self.window_s = float(config.hpe_window_s)
        # a learned "no pose" key: a video without any person still has something to attend to
        self.null_key = nn.Parameter(torch.randn(d) * 0.02)
        self.q = nn.Linear(d, d)
        self.k = nn.Linear(d, d)
        self.v = nn.Linear(d, d)
        self.o = nn.Linear(d, d)
        self.msa = nn.MultiheadAttention(d, config.num_heads, dropout=config.dropout, batch_first=True)
        self.norm1 = nn.LayerNorm(d)
        self.ffn = FFN(d, 4 * d, d, config.dropout)
        self.norm2 = nn.LayerNorm(d)
        self.dropout = nn.Dropout(config.dropout)

    def pose_tokens(self, pose: torch.Tensor, person_mask: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """(B, T, P, 17, 3), (B, T, P) -> pose token per step (B, T, d) and has-pose (B, T) bool."""
        b, t, n_p, j, _ = pose.shape
        x = pose.reshape(b * t * n_p, j, 3)  # (N, J, 3), N = B*T*P
        joint_valid = x[..., 2] > 0  # (N, J)
        g = self.joint_in(_joint_features(x, joint_valid, self.frame_position)) + self.joint_embed  # (N, J, p)
        for layer in self.graph:
            g = layer(g, self.adjacency, joint_valid)
        mean, mx = masked_mean_max(g, joint_valid, dim=1)  # (N, p) each
        person = self.person_out(torch.cat([mean, mx], dim=-1)).reshape(b, t, n_p, -1)  # (B, T, P, d)
        valid = person_mask & joint_valid.reshape(b, t, n_p, j).any(dim=-1)  # (B, T, P)
        mean, mx = masked_mean_max(person, valid, dim=2)  # (B, T, d) each
        return self.step_out(torch.cat([mean, mx], dim=-1)), valid.any(dim=-1)

    def forward(self, pose: torch.Tensor, person_mask: torch.Tensor, coarse: torch.Tensor,
                times_s: torch.Tensor, step_mask: torch.Tensor) -> torch.Tensor:
        b, t, _ = coarse.shape
        d, h = self.null_key.shape[0], self.num_heads
        tokens, has_pose = self.pose_tokens(pose, person_mask)  # (B, T, d), (B, T)
        valid = has_pose & step_mask  # (B, T): steps whose pose token can be attended to
        if self.window_s > 0:  # local in time, no absolute time (see UPRMConfig.hpe_window_s)
            when = torch.zeros(b, t, d, dtype=coarse.dtype, device=coarse.device)
            near = (times_s.unsqueeze(2) - times_s.unsqueeze(1)).abs() <= self.window_s + 1e-6  # (B, T, T)
        else:
            when = self.time_in(time_encoding(times_s, self.time_dim))  # (B, T, d)
            near = torch.ones(b, t, t, dtype=torch.bool, device=coarse.device)
        video = self.video_in(coarse) + when  # T_v: queries
        keys = torch.cat([self.null_key.expand(b, 1, d), tokens + when], dim=1)  # (B, 1+T, d)
        values = torch.cat([self.null_key.expand(b, 1, d), tokens], dim=1)  # (B, 1+T, d)
        key_ok = torch.cat([torch.ones_like(near[:, :, :1]), near & valid.unsqueeze(1)], dim=2)  # (B, T, 1+T)

        def heads(x: torch.Tensor) -> torch.Tensor:
            return x.reshape(b, x.shape[1], h, d // h).transpose(1, 2)  # (B, h, L, d/h)

        attn = F.scaled_dot_product_attention(heads(self.q(video)), heads(self.k(keys)), heads(self.v(values)),
                                              attn_mask=key_ok[:, None])  # (B, h, T, d/h)
        t_c = self.o(attn.transpose(1, 2).reshape(b, t, d))  # (B, T, d)
        # a step sees the real steps near it, and always itself (so a padding row is never empty)
        eye = torch.eye(t, dtype=torch.bool, device=coarse.device)
        blocked = ~((near & step_mask.unsqueeze(1)) | eye)  # (B, T, T), True = may not attend
        msa, _ = self.msa(t_c, t_c, t_c, attn_mask=blocked.repeat_interleave(h, dim=0), need_weights=False)
        t_c1 = self.norm1(t_c + self.dropout(msa))  # eq. 2
        out = self.norm2(t_c1 + self.dropout(self.ffn(t_c1)))  # eq. 3
        return out * step_mask.unsqueeze(-1)


def _joint_features(x: torch.Tensor, joint_valid: torch.Tensor, frame_position: bool = True) -> torch.Tensor:
    """(N, J, 3) x, y, score -> (N, J, 5) adding x, y relative to the person's joint centre and extent
    (without ``frame_position``: (N, J, 3), score and the relative x, y only).

    Frame-normalised coordinates say where a person is; relative ones say what shape the body has,
    whatever its distance to the camera.
    """
    xy = x[..., :2]
    m = joint_valid.unsqueeze(-1).to(x.dtype)  # (N, J, 1)
    count = m.sum(dim=1, keepdim=True).clamp(min=1.0)
    centre = (xy * m).sum(dim=1, keepdim=True) / count  # (N, 1, 2)
    big = torch.finfo(x.dtype).max
    lo = xy.masked_fill(~joint_valid.unsqueeze(-1), big).amin(dim=1, keepdim=True)
    hi = xy.masked_fill(~joint_valid.unsqueeze(-1), -big).amax(dim=1, keepdim=True)
    extent = (hi - lo).amax(dim=-1, keepdim=True).clamp(min=1e-3)  # (N, 1, 1)
    rel = torch.where(joint_valid.unsqueeze(-1), (xy - centre) / extent, torch.zeros_like(xy))
    return torch.cat([xy, x[..., 2:3], rel] if frame_position else [x[..., 2:3], rel], dim=-1)
