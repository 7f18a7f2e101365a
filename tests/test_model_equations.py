"""Each equation of the method checked against a small case computed by hand (scalar math, not the
vectorised code under test). A wrong sign, a missing square or a wrong normaliser fails these."""
from __future__ import annotations

import math

import pytest
import torch

from uprm.evidence import NUM_JOINTS, SKELETON_EDGES
from uprm.model.hpe import PoseGraphAttention, skeleton_adjacency
from uprm.model.loss import threat_loss, tradeoff_loss
from uprm.model.ore import RelationGraphLayer, normalized_adjacency
from uprm.model.router import gate

E = math.exp
S2 = math.sqrt(2.0)


def close(actual: torch.Tensor, expected, tol: float = 1e-5) -> None:
    torch.testing.assert_close(actual.double(), torch.tensor(expected, dtype=torch.float64), atol=tol, rtol=0)


# ------------------------------------------------------------------ eq. 1: pose-aware graph attention


def _chain_layer(u: list[list[float]]) -> PoseGraphAttention:
    layer = PoseGraphAttention(p=2)
    with torch.no_grad():
        layer.V.weight.copy_(torch.eye(2))
        layer.U.weight.copy_(torch.tensor(u))
    return layer


CHAIN = torch.tensor([[1, 1, 0], [1, 1, 1], [0, 1, 1]], dtype=torch.bool)  # joints 0-1-2 + self loops
G = torch.tensor([[[1.0, 0.0], [0.0, 1.0], [1.0, 1.0]]])  # (N=1, J=3, p=2)


def test_graph_attention_weights_and_update_match_hand_computation():
    # U [g_hat, g] = [g_hat_x - g_x, g_hat_y + g_y]: the ReLU must clip the negative x entries
    layer = _chain_layer([[1, 0, -1, 0], [0, 1, 0, 1]])
    out, beta = layer(G, CHAIN, torch.ones(1, 3, dtype=torch.bool), return_attention=True)
    # node 0, M = {0, 1}: scores g0.g0/sqrt2 = 1/sqrt2, g0.g1/sqrt2 = 0
    b00, b01 = E(1 / S2) / (E(1 / S2) + 1), 1 / (E(1 / S2) + 1)
    # node 1, M = {0, 1, 2}: scores 0, 1/sqrt2, 1/sqrt2
    z1 = 1 + 2 * E(1 / S2)
    b10, b11, b12 = 1 / z1, E(1 / S2) / z1, E(1 / S2) / z1
    # node 2, M = {1, 2}: scores 1/sqrt2, 2/sqrt2
    z2 = E(1 / S2) + E(2 / S2)
    b21, b22 = E(1 / S2) / z2, E(2 / S2) / z2
    close(beta[0], [[b00, b01, 0], [b10, b11, b12], [0, b21, b22]])
    g_hat = [[b00, b01], [b10 + b12, b11 + b12], [b22, b21 + b22]]  # sum_l beta_kl g_l
    g = [[1, 0], [0, 1], [1, 1]]
    expected = [[max(0.0, h[0] - x[0]), max(0.0, h[1] + x[1])] for h, x in zip(g_hat, g)]
    close(out[0], expected)
    assert expected[0][0] == 0.0 and expected[2][0] == 0.0  # the case really exercises the ReLU
    close(out[0, 1], [0.598889, 1.802221], tol=1e-5)  # the same numbers, worked out on paper


def test_graph_attention_drops_undetected_neighbours_but_keeps_self_loop():
    layer = _chain_layer([[1, 0, 0, 0], [0, 1, 0, 0]])  # output = ReLU(g_hat)
    out, beta = layer(G, CHAIN, torch.tensor([[True, True, False]]), return_attention=True)  # joint 2 unseen
    z1 = 1 + E(1 / S2)
    close(beta[0, 1], [1 / z1, E(1 / S2) / z1, 0.0])
    close(out[0, 1], [1 / z1, E(1 / S2) / z1])
    # the middle joint unseen: both ends keep only their self loop, so g_hat = g
    out, beta = layer(G, CHAIN, torch.tensor([[True, False, True]]), return_attention=True)
    close(beta[0, 0], [1.0, 0.0, 0.0])
    close(beta[0, 2], [0.0, 0.0, 1.0])
    close(out[0, 2], [1.0, 1.0])


def test_graph_attention_scores_use_v_but_aggregates_raw_features():
    layer = _chain_layer([[1, 0, 0, 0], [0, 1, 0, 0]])  # output = ReLU(g_hat)
    with torch.no_grad():
        layer.V.weight.copy_(torch.tensor([[1.0, 0.0], [0.0, 2.0]]))  # V g: [1, 0], [0, 2], [1, 2]
    out, beta = layer(G, CHAIN, torch.ones(1, 3, dtype=torch.bool), return_attention=True)
    # node 1: (V g1).(V g0) = 0, (V g1).(V g1) = 4, (V g1).(V g2) = 4, each over sqrt(p) = sqrt2
    z1 = 1 + 2 * E(4 / S2)
    b = [1 / z1, E(4 / S2) / z1, E(4 / S2) / z1]
    close(beta[0, 1], b)
    close(out[0, 1], [b[0] + b[2], b[1] + b[2]])  # g_hat_1 = sum_l beta_1l g_l (g, not V g)


def test_skeleton_adjacency_is_the_coco_graph_with_self_loops():
    adj = skeleton_adjacency()
    assert adj.shape == (NUM_JOINTS, NUM_JOINTS) and bool((adj == adj.T).all()) and bool(adj.diagonal().all())
    assert int(adj.sum()) == NUM_JOINTS + 2 * len(SKELETON_EDGES)
    assert adj[9, 7] and adj[7, 5] and not adj[9, 10]  # left wrist - elbow - shoulder; wrists not linked


# ------------------------------------------------------------------ eqs. 4-5: normalised graph layers


def test_normalized_adjacency_of_a_three_node_path():
    c = torch.tensor([[1.0, 1.0, 0.0], [1.0, 1.0, 1.0], [0.0, 1.0, 1.0]])  # degrees 2, 3, 2
    s6 = math.sqrt(6.0)
    close(normalized_adjacency(c), [[1 / 2, 1 / s6, 0], [1 / s6, 1 / 3, 1 / s6], [0, 1 / s6, 1 / 2]])


def test_normalized_adjacency_uses_row_degrees_and_zeroes_isolated_nodes():
    c = torch.tensor([[1.0, 2.0, 0.0], [0.0, 1.0, 0.0], [0.0, 0.0, 0.0]])  # D = diag(3, 1, 0)
    close(normalized_adjacency(c), [[1 / 3, 2 / math.sqrt(3), 0], [0, 1, 0], [0, 0, 0]])


def test_relation_layer_builds_c_from_predicates_and_applies_eq_5():
    r, k = 8, 3
    layer = RelationGraphLayer(2, 2, r)
    with torch.no_grad():
        layer.W.weight.copy_(torch.tensor([[1.0, 0.0], [0.0, -1.0]]))  # W^T: keeps x, flips y
    rel = torch.zeros(1, 1, r, k, k)
    rel[0, 0, 2, 0, 1] = 1.0  # entity 0 holding entity 1
    rel[0, 0, 6, 2, 2] = 1.0  # entity 2 lying (unary: must not enter C)
    valid = torch.ones(1, 1, k, dtype=torch.bool)
    w = 1 / (2 * r)  # uniform soft selection over 2R channels at initialisation
    close(layer.adjacency(rel, valid)[0, 0], [[1, w, 0], [w, 1, 0], [0, 0, 1]])

    f = torch.tensor([[[[1.0, 2.0], [3.0, -4.0], [5.0, 6.0]]]])  # (B, T, K, 2)
    d = 1 + w
    zf = [[(1 + w * 3) / d, (2 - w * 4) / d], [(w * 1 + 3) / d, (w * 2 - 4) / d], [5.0, 6.0]]
    expected = [[max(0.0, a), max(0.0, -b)] for a, b in zf]  # sigma(Z W), sigma = ReLU
    close(layer(f, rel, valid)[0, 0], expected)

    valid[0, 0, 1] = False  # object masking: entity 1 disappears, edges and self loop included
    close(layer.adjacency(rel, valid)[0, 0], [[1, 0, 0], [0, 0, 0], [0, 0, 1]])
    close(layer(f, rel, valid)[0, 0], [[1.0, 0.0], [0.0, 0.0], [5.0, 0.0]])


# ------------------------------------------------------------------ eq. 6: gate and fused token

LOGITS = torch.tensor([[[1.0, 2.0, 3.0, 0.5]]])  # (B, T, 4) = [x_hpe, x_ore, x_vbe, x_g]
EXPERTS = torch.tensor([[[[1.0, 0.0], [0.0, 1.0], [1.0, 1.0], [2.0, -1.0]]]])  # E_hpe, E_ore, E_vbe, E_g
ALL = torch.ones(3, dtype=torch.bool)


def test_gate_weights_and_z_match_eq_6():
    out = gate(LOGITS, EXPERTS, ALL, ptr=True)
    s = E(1) + E(2) + E(3)
    r = [E(1) / s, E(2) / s, E(3) / s]
    g = max(r)
    close(out.fine_weights[0, 0], r)
    close(out.coarse_share[0, 0], 1 - g)
    close(out.z[0, 0], [r[0] + r[2] + 2 * (1 - g), r[1] + r[2] - (1 - g)])
    close(out.z[0, 0], [1.424790, 0.575210], tol=1e-5)  # worked out on paper


def test_gate_gives_disabled_experts_zero_weight():
    out = gate(LOGITS, EXPERTS, torch.tensor([False, True, True]), ptr=True)
    s = E(2) + E(3)
    r = [0.0, E(2) / s, E(3) / s]
    close(out.fine_weights[0, 0], r)
    close(out.z[0, 0], [r[2] + 2 * (1 - r[2]), r[1] + r[2] - (1 - r[2])])
    none = gate(LOGITS, EXPERTS, torch.zeros(3, dtype=torch.bool), ptr=True)  # G = 0: z = E_g
    close(none.fine_weights[0, 0], [0, 0, 0])
    close(none.coarse_share[0, 0], 1.0)
    close(none.z[0, 0], [2.0, -1.0])


def test_basic_moe_without_ptr_is_a_softmax_over_all_four():
    out = gate(LOGITS, EXPERTS, ALL, ptr=False)
    s = E(1) + E(2) + E(3) + E(0.5)
    w = [E(1) / s, E(2) / s, E(3) / s, E(0.5) / s]
    close(out.fine_weights[0, 0], w[:3])
    close(out.coarse_share[0, 0], w[3])
    close(out.z[0, 0], [w[0] + w[2] + 2 * w[3], w[1] + w[2] - w[3]])
    off = gate(LOGITS, EXPERTS, torch.tensor([True, False, True]), ptr=False)
    s = E(1) + E(3) + E(0.5)
    close(off.fine_weights[0, 0], [E(1) / s, 0, E(3) / s])
    close(off.coarse_share[0, 0], E(0.5) / s)


def test_gate_has_finite_gradients_when_a_step_has_no_fine_expert():
    logits = LOGITS.clone().requires_grad_(True)
    gate(logits, EXPERTS, torch.zeros(1, 1, 3, dtype=torch.bool), ptr=True).z.sum().backward()
    assert torch.isfinite(logits.grad).all()


# ------------------------------------------------------------------ eq. 7: trade-off loss


def test_tradeoff_loss_matches_eq_7_and_ignores_padding():
    logits = torch.tensor([[[1.0, 2.0, 3.0, 0.5], [0.0, 0.0, 0.0, 0.0], [50.0, 50.0, 50.0, 50.0]]])
    step_mask = torch.tensor([[True, True, False]])  # the third step is padding
    t1 = math.log(E(1) + E(2) + E(3) + E(0.5)) ** 2
    t2 = math.log(4.0) ** 2
    close(tradeoff_loss(logits, ALL, step_mask), (t1 + t2) / 2)
    close(tradeoff_loss(logits, ALL, step_mask), 6.949382, tol=1e-5)  # worked out on paper


def test_tradeoff_loss_leaves_out_experts_that_cannot_receive_weight():
    logits = torch.tensor([[[1.0, 2.0, 3.0, 0.5]]])
    only_vbe = tradeoff_loss(logits, torch.tensor([False, False, True]), torch.ones(1, 1, dtype=torch.bool))
    close(only_vbe, math.log(E(3) + E(0.5)) ** 2)


def test_tradeoff_loss_is_zero_only_when_the_partition_is_one():
    # logsumexp = 0 exactly when sum exp = 1: four logits of log(1/4)
    logits = torch.full((1, 1, 4), math.log(0.25))
    close(tradeoff_loss(logits, ALL, torch.ones(1, 1, dtype=torch.bool)), 0.0)
    assert float(tradeoff_loss(logits - 1, ALL, torch.ones(1, 1, dtype=torch.bool))) == pytest.approx(1.0)


def test_threat_loss_is_masked_binary_cross_entropy():
    logits = torch.tensor([[0.0, 2.0, -1.0]])
    targets = torch.tensor([[1.0, 0.0, 1.0]])
    mask = torch.tensor([[True, True, False]])
    expected = (-math.log(0.5) - math.log(1 - 1 / (1 + E(-2)))) / 2
    close(threat_loss(logits, targets, mask), expected)
    with pytest.raises(ValueError, match=r"\[0, 1\]"):
        threat_loss(logits, targets * 2, mask)
