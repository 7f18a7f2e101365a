"""How far the cached evidence alone can separate threat steps from normal ones: a reference for the model.

A gradient-boosted tree (scikit-learn, a dependency of sentence-transformers) on a few dozen hand-made
per-step features of the same evidence the model reads (counts, track speeds, ages, still times and
wandering, the scene-graph predicates, the fight probability, the person occupancy), each also as its
difference to 1 and 2 s before and after. Trained on the fold clips (the training footage without the
validation window, as the fold twin whose validation AUC it is set beside); frame-level ROC AUC on the
validation and held-out clips. A different learner that reaches about the model's AUC says the
evidence, not the model, sets the limit. Run by assets/evaluate_default_model.py (its numbers go into
the model card).
"""
from __future__ import annotations

from typing import Sequence

import numpy as np

from uprm import bootstrap as bs
from uprm.evidence import SCENE_CHANGE_CLASS_ID
from uprm.featurize import featurize
from uprm.model.config import UPRMConfig
from uprm.model.inputs import MOTION_FEATURES

SPEED, AGE, STILL, WANDER4, WANDER8 = (MOTION_FEATURES.index(k) for k in
                                       ("speed_hps", "log_age_s", "log_still_s", "wander_4s_h", "wander_8s_h"))
ZONE, FWANDER = MOTION_FEATURES.index("zone_dwell_8s"), MOTION_FEATURES.index("flow_wander_2s_h")
FLOW, FVX, FVY, FLAIL, MOVING, DROP, GREY, CONTRAST, BEFORE, CAGE, OVERLAP = (MOTION_FEATURES.index(k) for k in (
    "flow_speed_hps", "flow_vx_hps", "flow_vy_hps", "flow_flail_hps", "flow_moving_frac", "flow_drop_hps",
    "change_grey", "change_contrast", "change_contrast_before", "change_log_age_s", "change_person_overlap"))
CONTEXT_STEPS = (-4, -2, 2, 4)  # at 2 fps: 2 and 1 s before and after


def step_features(evidence, config: UPRMConfig) -> np.ndarray:
    """(T, F) hand-made features of one video's evidence, from the model's own inputs (the motion layer's
    flow and scene changes included when the evidence has them)."""
    x = featurize(evidence, config)
    motion, cls, ok = x.object_motion[0].numpy(), x.object_class[0].numpy(), x.object_mask[0].numpy()
    box, rel = x.object_box[0].numpy(), x.relations[0].numpy()
    fight = x.coarse[0, :, -1].numpy()  # the last coarse entry is mc3's fight probability
    occupancy = x.background[0, :, -64:].numpy().sum(axis=1)  # person-mask occupancy grid, summed
    rows = []
    for t in range(motion.shape[0]):
        person, thing = ok[t] & (cls[t] == 1), ok[t] & (cls[t] != 1) & (cls[t] != SCENE_CHANGE_CLASS_ID)
        change = ok[t] & (cls[t] == SCENE_CHANGE_CLASS_ID)
        m = motion[t]
        flow, flail, drop = m[person, FLOW], m[person, FLAIL], m[person, DROP]
        fast = person & (m[:, FLOW] > 0.5)
        direction = m[fast][:, [FVX, FVY]]
        along = (direction @ direction.mean(axis=0) > 0).sum() if len(direction) else 0  # fast and heading the same way
        new = change & (m[:, OVERLAP] < 0.5) & (m[:, CONTRAST] > m[:, BEFORE])  # nobody stands there
        area = (box[t, :, 2] - box[t, :, 0]) * (box[t, :, 3] - box[t, :, 1])
        wide = (box[t, :, 2] - box[t, :, 0]) / np.maximum(box[t, :, 3] - box[t, :, 1], 1e-6)
        flow_rows = [flow.max(initial=0), (flow > 0.5).sum(), (flow > 0.8).sum(), along, flail.max(initial=0),
                     (flail > 0.3).sum(), drop.max(initial=0), new.sum(), m[new, GREY].max(initial=0),
                     area[new].max(initial=0), wide[new].max(initial=0), m[new, CAGE].max(initial=0),
                     m[change, OVERLAP].mean() if change.any() else 1.0, m[person, FWANDER].max(initial=0),
                     (m[person, FWANDER] > 0.5).sum(), m[person, ZONE].max(initial=0),
                     (m[person, ZONE] * m[person, FLOW]).max(initial=0)]
        speed, still, age = motion[t, person, SPEED], motion[t, person, STILL], motion[t, person, AGE]
        height = box[t, person, 3] - box[t, person, 1]
        rows.append([person.sum(), thing.sum(), speed.max(initial=0), speed.mean() if speed.size else 0.0,
                     (speed > 1.0).sum(), (speed > 0.6).sum(), still.max(initial=0), (still > 1.0).sum(),
                     age.max(initial=0), motion[t, thing, STILL].max(initial=0), (motion[t, thing, AGE] > 0.7).sum(),
                     motion[t, person, WANDER4].max(initial=0), motion[t, person, WANDER8].max(initial=0),
                     height.max(initial=0), height.min(initial=0) if height.size else 0.0,
                     *(rel[t, r].max(initial=0) for r in range(rel.shape[1])), fight[t], occupancy[t], *flow_rows])
    f = np.asarray(rows, np.float32)
    return np.concatenate([f] + [f - np.roll(f, s, axis=0) for s in CONTEXT_STEPS], axis=1)


def labelled(composed: bs.ComposedSet, evidences: dict, config: UPRMConfig):
    """Features, 0/1 step labels (inside a GT segment) and each step's event kind ('' outside)."""
    labelled = [bs.clip_step_labels(c, evidences[c.path].times_s) for c in composed.clips]
    return (np.concatenate([step_features(evidences[c.path], config) for c in composed.clips]),
            np.concatenate([y for y, _ in labelled]), np.concatenate([k for _, k in labelled]))


def probe(train: tuple, others: dict[str, tuple], seed: int = 0) -> dict:
    """Fit on ``train`` = (X, y, kinds); AUC overall and per kind on it and on each of ``others``."""
    from sklearn.ensemble import HistGradientBoostingClassifier

    clf = HistGradientBoostingClassifier(max_iter=300, learning_rate=0.05, max_leaf_nodes=15, random_state=seed)
    clf.fit(train[0], train[1])
    out = {"learner": "HistGradientBoostingClassifier(max_iter=300, learning_rate=0.05, max_leaf_nodes=15)",
           "n_features": int(train[0].shape[1])}
    for name, (x, y, kinds) in {"train": train, **others}.items():
        out[name] = bs.auc_by_kind(y, clf.predict_proba(x)[:, 1], kinds)
    return out


def run(sets: Sequence[tuple[bs.ComposedSet, dict]], config: UPRMConfig) -> dict:
    """``sets``: (training set, its evidence) first, then the sets to score, each with its evidence."""
    (train, ev_train), *rest = sets
    return probe(labelled(train, ev_train, config), {c.name: labelled(c, ev, config) for c, ev in rest})
