"""Evidence augmentation for training: the same event seen by a slightly different perception.

The bootstrap model fits the people of its training footage and not new ones: harmless pasted walkers
score 0.9 or more on 0.3 % of their training steps but on ~18-20 % of steps in footage it has not seen
(MODEL_CARD.md, v11's diagnosis). What differs between two people walking by is what the front-ends
report about them: where the pose estimator puts each joint, how sure it is, which frames a detector
misses, the boxes, the flow inside them and the global frame feature. ``augment_inputs`` perturbs
exactly those, per video and step, inside what perception itself gets wrong, so the model cannot key
on one person's exact numbers:

- a mirror image (x -> 1 - x, left and right joints swapped, horizontal velocities negated) for half
  the videos: a fall or a struggle is one whichever way it faces;
- joints moved by a share of the person's height, their scores scaled, some joints missed;
- people and entities missed for a step (a detector's misses; relations touching a missed entity go
  with it);
- boxes moved and resized by a share of their size, detector scores scaled;
- each entity's kinematics and flow scaled;
- the coarse frame feature given noise proportional to its own size.

One knob, ``strength`` (0 = off, 1 = the magnitudes below), so a build can pick it on validation like
any other setting. Random numbers come from torch's global generator, which the trainer seeds and saves
in every checkpoint, so an augmented run resumes exactly.
"""
from __future__ import annotations

from dataclasses import replace

from uprm.evidence import JOINT_NAMES

# at strength 1
KEYPOINT_JITTER_H = 0.04  # joint position noise, in person heights (std)
JOINT_MISS_P = 0.05  # a visible joint reported as missed
SCORE_SCALE = 0.15  # joint and detector scores scaled by U(1 - s, 1 + s)
PERSON_MISS_P = 0.08  # a person missed for one step
ENTITY_MISS_P = 0.08  # an entity (person box, object, scene change) missed for one step
BOX_JITTER = 0.05  # box corners moved by this share of the box's width / height (std)
MOTION_SCALE = 0.15  # kinematics and flow scaled by N(1, s) per entity and step
COARSE_NOISE = 0.3  # coarse feature noise std, as a share of the feature's RMS per step
MIRROR_P = 0.5  # a video seen mirrored
MAX_STRENGTH = 4.0

# index of each joint's mirror image (left_eye <-> right_eye, ...), so a mirrored pose stays a pose
MIRRORED_JOINTS = tuple(
    JOINT_NAMES.index(n.replace("left_", "right_") if n.startswith("left_") else n.replace("right_", "left_"))
    for n in JOINT_NAMES)
# columns of object_motion that are horizontal velocities (negated by a mirror)
_HORIZONTAL = ("vx_fps", "flow_vx_hps")


def augment_inputs(x, strength: float):
    """``x`` (ExpertInputs, any B) perturbed as the module docstring says; padding stays zero and masks
    only lose entries. ``strength`` 0 returns ``x`` itself."""
    import torch

    from uprm.model.inputs import MOTION_FEATURES

    if strength <= 0:
        return x
    s = float(strength)
    b, t, p = x.person_mask.shape
    k = x.object_mask.shape[2]
    dev = x.pose.device

    def scale(shape, spread):  # U(1 - spread, 1 + spread)
        return 1.0 + (torch.rand(shape, device=dev) * 2 - 1) * min(spread, 0.95)

    mirror = torch.rand(b, device=dev) < MIRROR_P

    # pose: (B, T, P, 17, 3)
    pose = x.pose.clone()
    seen = pose[..., 2] > 0  # (B, T, P, 17)
    y = pose[..., 1]  # a person with no seen joint gets -3 before the clamp
    height = (y.masked_fill(~seen, -1.0).amax(-1) - y.masked_fill(~seen, 2.0).amin(-1)).clamp(min=0.02)  # (B, T, P)
    pose[..., :2] += torch.randn_like(pose[..., :2]) * (KEYPOINT_JITTER_H * s) * height[..., None, None]
    pose[..., 2] = (pose[..., 2] * scale(pose[..., 2].shape, SCORE_SCALE * s)).clamp(0.0, 1.0)
    seen = seen & (torch.rand(seen.shape, device=dev) >= JOINT_MISS_P * s)
    m = mirror[:, None, None, None]
    flipped = pose[..., list(MIRRORED_JOINTS), :]  # a copy: list indexing
    flipped[..., 0] = 1.0 - flipped[..., 0]
    pose = torch.where(m[..., None], flipped, pose)
    seen = torch.where(m, seen[..., list(MIRRORED_JOINTS)], seen)
    pose[..., :2] = pose[..., :2].clamp(0.0, 1.0)
    person_mask = x.person_mask & (torch.rand(b, t, p, device=dev) >= PERSON_MISS_P * s)
    pose = pose * (seen & person_mask[..., None])[..., None]  # missed joints and people: zeros, as featurize

    # entities: boxes (B, T, K, 4), scores, relations (B, T, R, K, K), motion (B, T, K, M)
    wh = (x.object_box[..., 2:] - x.object_box[..., :2]).clamp(min=0.0).repeat(1, 1, 1, 2)
    box = x.object_box + torch.randn_like(x.object_box) * (BOX_JITTER * s) * wh
    box = torch.where(mirror[:, None, None, None], torch.stack([1 - box[..., 2], box[..., 1], 1 - box[..., 0],
                                                                 box[..., 3]], dim=-1), box)
    box = box.clamp(0.0, 1.0)
    box = torch.cat([torch.minimum(box[..., :2], box[..., 2:]), torch.maximum(box[..., :2], box[..., 2:])], -1)
    object_mask = x.object_mask & (torch.rand(b, t, k, device=dev) >= ENTITY_MISS_P * s)
    keep = object_mask.float()
    score = (x.object_score * scale(x.object_score.shape, SCORE_SCALE * s)).clamp(0.0, 1.0) * keep
    relations = x.relations * keep[:, :, None, :, None] * keep[:, :, None, None, :]
    motion = x.object_motion * (1.0 + torch.randn_like(x.object_motion) * (MOTION_SCALE * s))
    sign = torch.ones(len(MOTION_FEATURES), device=dev)
    sign[[MOTION_FEATURES.index(c) for c in _HORIZONTAL]] = -1.0
    motion = torch.where(mirror[:, None, None, None], motion * sign, motion) * keep[..., None]

    # the coarse frame feature: noise proportional to its own size, per step
    rms = x.coarse.pow(2).mean(-1, keepdim=True).sqrt()
    coarse = (x.coarse + torch.randn_like(x.coarse) * (COARSE_NOISE * s) * rms) * x.step_mask[..., None]

    return replace(x, pose=pose, person_mask=person_mask, object_box=box * keep[..., None], object_score=score,
                   object_mask=object_mask, object_class=x.object_class * object_mask, relations=relations,
                   object_motion=motion, coarse=coarse)
