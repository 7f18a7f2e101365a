"""Fitting the kind head (``UPRMModel.kind_head``) on a trained model: which kind of event each threat step is.

The threat head says whether a step is a threat; the studio also shows which kind, and rules over the
evidence told kinds apart badly (most segments came out "struggle"). The fusion stays as trained: z is
computed once per video without gradients and only the head learns, from the steps inside labelled
events (steps outside carry no kind and are left out). Kinds are weighted by inverse frequency, so a
rare kind is not drowned by a frequent one.
"""
from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

NO_KIND = -1  # target of a step outside every labelled event


@dataclass(frozen=True)
class KindFitSettings:
    epochs: int = 30
    lr: float = 3e-3
    weight_decay: float = 1e-2
    videos_per_step: int = 8
    seed: int = 0


@dataclass(frozen=True)
class KindFitResult:
    kinds: tuple[str, ...]
    steps_by_kind: dict[str, int]  # labelled steps the head learnt from
    loss_first_epoch: float
    loss_last_epoch: float
    step_accuracy: float  # on the same steps after fitting (balanced: mean of per-kind recall)


def kind_targets(times_s: Sequence[float], events: Sequence[tuple[float, float, str]],
                 kinds: Sequence[str]) -> np.ndarray:
    """Per step, the index in ``kinds`` of the event (start_s, end_s, kind) covering it, or NO_KIND. Where
    events overlap the later-starting one wins; an event of a kind not in ``kinds`` is an error."""
    index = {k: i for i, k in enumerate(kinds)}
    unknown = sorted({k for _, _, k in events} - set(index))
    if unknown:
        raise ValueError(f"event kind(s) {unknown} are not among the kind head's {list(kinds)}")
    t = np.asarray(times_s, np.float64)
    out = np.full(len(t), NO_KIND, np.int64)
    for start_s, end_s, kind in sorted(events):
        out[(t >= start_s) & (t < end_s)] = index[kind]
    return out


def fit_kind_head(model, videos: Sequence[tuple[object, np.ndarray]],
                  settings: KindFitSettings = KindFitSettings()) -> KindFitResult:
    """Fit ``model.kind_head`` (add one with ``model.with_kind_head``) on ``videos``: (ExpertInputs of one
    video, per-step targets from ``kind_targets``). Only the head's weights change."""
    import torch
    import torch.nn.functional as F

    head, kinds = model.kind_head, model.config.event_kinds
    if head is None:
        raise ValueError("the model has no kind head: call model.with_kind_head(kinds) first")
    model.eval()
    fused = []
    with torch.no_grad():
        for inputs, targets in videos:
            out = model(inputs.to(model.device))
            if len(targets) != out.fused.shape[1]:
                raise ValueError(f"{len(targets)} targets for a video of {out.fused.shape[1]} steps")
            if (np.asarray(targets) >= 0).any():
                fused.append((out.fused, out.step_mask, torch.as_tensor(np.asarray(targets), device=model.device)))
    if not fused:
        raise ValueError("no step of these videos lies inside a labelled event: nothing to fit the kind head on")
    counts = torch.bincount(torch.cat([y[y >= 0] for _, _, y in fused]), minlength=len(kinds)).float()
    weight = torch.where(counts > 0, counts.sum() / (len(kinds) * counts.clamp(min=1)), torch.zeros_like(counts))

    generator = torch.Generator().manual_seed(settings.seed)
    optimizer = torch.optim.AdamW(head.parameters(), lr=settings.lr, weight_decay=settings.weight_decay)
    head.train()
    epoch_losses = []
    for _ in range(settings.epochs):
        order = torch.randperm(len(fused), generator=generator).tolist()
        total, n = 0.0, 0
        for first in range(0, len(order), settings.videos_per_step):
            optimizer.zero_grad()
            chunk = [fused[i] for i in order[first:first + settings.videos_per_step]]
            loss = sum(F.cross_entropy(head(z, sm)[0], y, weight=weight, ignore_index=NO_KIND, reduction="sum")
                       for z, sm, y in chunk) / sum(float(weight[y[y >= 0]].sum()) for _, _, y in chunk)
            loss.backward()
            optimizer.step()
            total, n = total + float(loss.detach()), n + 1
        epoch_losses.append(total / n)
    head.eval()
    with torch.no_grad():
        hits, seen = torch.zeros(len(kinds)), torch.zeros(len(kinds))
        for z, sm, y in fused:
            pred, keep = head(z, sm)[0].argmax(-1), y >= 0
            seen += torch.bincount(y[keep], minlength=len(kinds)).float()
            hits += torch.bincount(y[keep][pred[keep] == y[keep]], minlength=len(kinds)).float()
    present = seen > 0
    return KindFitResult(tuple(kinds), {k: int(c) for k, c in zip(kinds, counts.tolist())},
                         round(epoch_losses[0], 4), round(epoch_losses[-1], 4),
                         round(float((hits[present] / seen[present]).mean()), 4))
