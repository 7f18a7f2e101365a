"""ExpertInputs: the batched tensors the four experts read, one row per sampled time step.

B = videos in the batch, T = sampled time steps (2 fps by default), P = people per step, K = entities
per step, R = len(PREDICATES). Padding steps have ``step_mask == False``; padding people/entities have
their mask False. ``uprm.featurize.featurize`` builds one (B = 1) from a ``VideoEvidence``;
``ExpertInputs.collate`` pads several into a batch.
"""
from __future__ import annotations

from dataclasses import dataclass, fields, replace

import torch

from uprm.evidence import ENTITY_MOTION, NUM_JOINTS, PREDICATES
from uprm.model.errors import InputError

# per entity, from its track over the last second(s) (uprm.featurize.entity_motion): speed in body
# heights per second, velocity in frame widths / heights per second, log(1 + seconds since the track
# appeared), log(1 + seconds it has stayed within half a body height of where it is now), both capped, and
# how far it wandered without getting anywhere over the last 4 and 8 s (path length minus net
# displacement, in body heights: pacing back and forth scores high, walking through or standing ~0), and
# the share of the last 8 s in which some person stood within a body height of where it is now
# (without relying on the tracker, which loses people who turn and pause).
# Falls, runs, loitering and left items are motion over time, which one frame's boxes cannot show.
TRACK_FEATURES = ("speed_hps", "vx_fps", "vy_fps", "log_age_s", "log_still_s", "wander_4s_h", "wander_8s_h",
                  "zone_dwell_8s")
# then what the motion front-end measured between samples (uprm.evidence.ENTITY_MOTION: optical flow
# inside the entity's box at up to 10 fps, and for scene changes how they look); zeros without it
MOTION_FEATURES = TRACK_FEATURES + ENTITY_MOTION


@dataclass
class ExpertInputs:
    pose: torch.Tensor  # (B, T, P, 17, 3) float: x, y normalised to [0, 1] by frame size, joint score
    person_mask: torch.Tensor  # (B, T, P) bool: a real person with a pose
    object_class: torch.Tensor  # (B, T, K) long: COCO-91 class id (0 = unknown)
    object_box: torch.Tensor  # (B, T, K, 4) float: x1, y1, x2, y2 normalised to [0, 1]
    object_score: torch.Tensor  # (B, T, K) float: detector confidence
    object_mask: torch.Tensor  # (B, T, K) bool: a real entity
    relations: torch.Tensor  # (B, T, R, K, K) float: [b,t,r,i,j] = score of (i, PREDICATES[r], j); unary on i == j
    background: torch.Tensor  # (B, T, D_bg) float: segmentation / scene token for VBE
    background_mask: torch.Tensor  # (B, T) bool: the step had a background vector (zeros otherwise)
    coarse: torch.Tensor  # (B, T, D_coarse) float: global clip/frame feature for CVE and HPE's queries
    step_mask: torch.Tensor  # (B, T) bool: a real (not padding) time step
    times_s: torch.Tensor  # (B, T) float: time of each step in seconds
    # (B, T, K, MOTION_FEATURES) float: each entity's kinematics from its track (see MOTION_FEATURES);
    # None = unknown (zeros), e.g. inputs built without tracks
    object_motion: torch.Tensor | None = None

    def __post_init__(self) -> None:
        if self.pose.dim() != 5 or self.pose.shape[-2:] != (NUM_JOINTS, 3):
            raise InputError(f"pose must be (B, T, P, {NUM_JOINTS}, 3), got {tuple(self.pose.shape)}")
        b, t, p = self.pose.shape[:3]
        k = self.object_class.shape[-1] if self.object_class.dim() == 3 else -1
        if self.object_motion is None:
            self.object_motion = torch.zeros(b, t, max(k, 0), len(MOTION_FEATURES), device=self.pose.device)
        r = len(PREDICATES)
        expected = {
            "person_mask": (b, t, p), "object_class": (b, t, k), "object_box": (b, t, k, 4),
            "object_score": (b, t, k), "object_mask": (b, t, k), "relations": (b, t, r, k, k),
            "background_mask": (b, t), "step_mask": (b, t), "times_s": (b, t),
            "object_motion": (b, t, k, len(MOTION_FEATURES)),
        }
        bad = {name: tuple(getattr(self, name).shape) for name, shape in expected.items()
               if tuple(getattr(self, name).shape) != shape}
        for name in ("background", "coarse"):
            if getattr(self, name).dim() != 3 or getattr(self, name).shape[:2] != (b, t):
                bad[name] = tuple(getattr(self, name).shape)
        if bad:
            raise InputError(f"ExpertInputs shapes disagree with pose (B={b}, T={t}, P={p}) and object_class "
                             f"(K={k}), R={r}: wrong fields {bad}; see the shape comments in uprm.model.inputs")
        for name in ("person_mask", "object_mask", "background_mask", "step_mask"):
            if getattr(self, name).dtype != torch.bool:
                raise InputError(f"{name} must be a bool tensor, got {getattr(self, name).dtype}")
        if self.object_class.dtype != torch.long:
            raise InputError(f"object_class must be a long tensor, got {self.object_class.dtype}")
        if t == 0 or not bool(self.step_mask.any(dim=1).all()):
            raise InputError("every video in the batch needs at least one valid time step (step_mask)")

    @property
    def batch_size(self) -> int:
        return self.pose.shape[0]

    @property
    def num_steps(self) -> int:
        return self.pose.shape[1]

    def to(self, device: torch.device | str) -> "ExpertInputs":
        return replace(self, **{f.name: getattr(self, f.name).to(device) for f in fields(self)})

    def slice_steps(self, start: int, stop: int) -> "ExpertInputs":
        """The time steps [start, stop) of every video (e.g. one threat segment for the LM)."""
        if not 0 <= start < stop <= self.num_steps:
            raise InputError(f"step slice [{start}, {stop}) is outside 0..{self.num_steps}")
        return replace(self, **{f.name: getattr(self, f.name)[:, start:stop] for f in fields(self)})

    def one_video(self, index: int) -> "ExpertInputs":
        """Video ``index`` of the batch as a B = 1 ExpertInputs (e.g. for ``model.answer``)."""
        if not -self.batch_size <= index < self.batch_size:
            raise InputError(f"video {index} is outside the batch of {self.batch_size}")
        return replace(self, **{f.name: getattr(self, f.name)[index:index + 1 or None] for f in fields(self)})

    @classmethod
    def collate(cls, items: list["ExpertInputs"]) -> "ExpertInputs":
        """Pad videos (each B >= 1) to the longest T and the largest P, K, then stack along B."""
        if not items:
            raise InputError("collate needs at least one ExpertInputs")
        t = max(x.num_steps for x in items)
        p = max(x.pose.shape[2] for x in items)
        k = max(x.object_class.shape[2] for x in items)
        padded = [_pad(x, t, p, k) for x in items]
        return cls(**{f.name: torch.cat([getattr(x, f.name) for x in padded]) for f in fields(cls)})


def _pad(x: ExpertInputs, t: int, p: int, k: int) -> ExpertInputs:
    dt, dp, dk = t - x.num_steps, p - x.pose.shape[2], k - x.object_class.shape[2]
    if not (dt or dp or dk):
        return x
    pad = torch.nn.functional.pad
    return ExpertInputs(
        pose=pad(x.pose, (0, 0, 0, 0, 0, dp, 0, dt)),
        person_mask=pad(x.person_mask, (0, dp, 0, dt)),
        object_class=pad(x.object_class, (0, dk, 0, dt)),
        object_box=pad(x.object_box, (0, 0, 0, dk, 0, dt)),
        object_score=pad(x.object_score, (0, dk, 0, dt)),
        object_mask=pad(x.object_mask, (0, dk, 0, dt)),
        relations=pad(x.relations, (0, dk, 0, dk, 0, 0, 0, dt)),
        background=pad(x.background, (0, 0, 0, dt)),
        background_mask=pad(x.background_mask, (0, dt)),
        coarse=pad(x.coarse, (0, 0, 0, dt)),
        step_mask=pad(x.step_mask, (0, dt)),
        times_s=pad(x.times_s, (0, dt)),
        object_motion=pad(x.object_motion, (0, 0, 0, dk, 0, dt)),
    )


def random_expert_inputs(config, batch_size: int = 1, num_steps: int = 8, seed: int = 0,
                         sample_fps: float = 2.0) -> ExpertInputs:
    """Well-formed random inputs of the config's sizes (benchmarks, shape and gradient tests).

    About 60-70% of people/entities/background slots are filled so masks and "no evidence" paths
    are exercised; every video's steps are all valid.
    """
    g = torch.Generator().manual_seed(seed)
    b, t, p, k, r = batch_size, num_steps, config.max_persons, config.max_entities, len(PREDICATES)
    corner = torch.rand(b, t, k, 2, generator=g) * 0.6
    size = 0.05 + torch.rand(b, t, k, 2, generator=g) * 0.35
    return ExpertInputs(
        pose=torch.rand(b, t, p, NUM_JOINTS, 3, generator=g),
        person_mask=torch.rand(b, t, p, generator=g) < 0.6,
        object_class=torch.randint(0, config.num_object_classes, (b, t, k), generator=g),
        object_box=torch.cat([corner, corner + size], dim=-1),
        object_score=torch.rand(b, t, k, generator=g),
        object_mask=torch.rand(b, t, k, generator=g) < 0.6,
        relations=(torch.rand(b, t, r, k, k, generator=g) < 0.1).float() * torch.rand(b, t, r, k, k, generator=g),
        background=torch.randn(b, t, config.d_bg, generator=g),
        background_mask=torch.rand(b, t, generator=g) < 0.7,
        coarse=torch.randn(b, t, config.d_coarse, generator=g),
        step_mask=torch.ones(b, t, dtype=torch.bool),
        times_s=(torch.arange(t, dtype=torch.float32) / sample_fps).expand(b, t).clone(),
        object_motion=torch.randn(b, t, k, len(MOTION_FEATURES), generator=g).abs(),
    )
