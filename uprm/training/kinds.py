"""Fitting the kind head (``UPRMModel.kind_head``) on a trained model: which kind of event each threat step is.

The threat head says whether a step is a threat; the studio also shows which kind, and rules over the
evidence told kinds apart badly (most segments came out "struggle"). The fusion stays as trained: z is
computed once per video without gradients and only the head learns, from the steps inside labelled
events. Kinds are weighted by inverse frequency, so a rare kind is not drowned by a frequent one.
Steps outside every event carry no kind: left out when the head is fitted from scratch on a whole
training set; when a few corrected videos refit a head that already works (the correction loop), they
hold it to what it said before (``keep_weight``), so teaching one kind does not unteach the others.
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
    # > 0: on steps outside every labelled event, KL from the head's own probabilities before fitting, at
    # this weight against the labelled steps' cross-entropy (learning without forgetting, Li & Hoiem 2016)
    keep_weight: float = 0.0


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


def event_steps(times_s: Sequence[float], step_s: float, start_s: float, end_s: float) -> list[int]:
    """The steps whose half-step span lies inside (start_s, end_s); the nearest step when none does."""
    t, half = np.asarray(times_s, np.float64), step_s / 2
    steps = [i for i in range(len(t)) if start_s - 1e-6 <= t[i] - half and t[i] + half <= end_s + 1e-6]
    return steps or [int(np.argmin(np.abs(t - (start_s + end_s) / 2)))]


def kinds_at_events(kind_prob: np.ndarray, times_s: Sequence[float], step_s: float,
                    events: Sequence[tuple[float, float, str]], kinds: Sequence[str]) -> list[tuple[str, str]]:
    """(kind, kind the head names) for each event (start_s, end_s, kind) of one video whose kind is one of
    ``kinds``: the kind with the highest mean probability over the event's steps (``kind_prob``: (T, K))."""
    from uprm.analysis import category_from_kinds

    return [(kind, category_from_kinds(kind_prob[event_steps(times_s, step_s, s, e)], tuple(kinds)))
            for s, e, kind in events if kind in kinds]


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
    fused = []  # (z, step mask, targets, the head's probabilities before fitting)
    with torch.no_grad():
        for inputs, targets in videos:
            out = model(inputs.to(model.device))
            if len(targets) != out.fused.shape[1]:
                raise ValueError(f"{len(targets)} targets for a video of {out.fused.shape[1]} steps")
            if (np.asarray(targets) >= 0).any() or settings.keep_weight > 0:
                fused.append((out.fused, out.step_mask, torch.as_tensor(np.asarray(targets), device=model.device),
                              out.kind_logits[0].softmax(-1)))
    labelled = [y[y >= 0] for _, _, y, _ in fused]
    if not sum(len(y) for y in labelled):
        raise ValueError("no step of these videos lies inside a labelled event: nothing to fit the kind head on")
    counts = torch.bincount(torch.cat(labelled), minlength=len(kinds)).float()
    weight = torch.where(counts > 0, counts.sum() / (len(kinds) * counts.clamp(min=1)), torch.zeros_like(counts))

    def chunk_loss(chunk) -> torch.Tensor:
        logits = [head(z, sm)[0] for z, sm, _, _ in chunk]
        loss = sum(F.cross_entropy(lg, y, weight=weight, ignore_index=NO_KIND, reduction="sum")
                   for lg, (_, _, y, _) in zip(logits, chunk))
        norm = sum(float(weight[y[y >= 0]].sum()) for _, _, y, _ in chunk)
        loss = loss / norm if norm > 0 else logits[0].sum() * 0.0
        free = [(lg[(y < 0) & sm[0]], before[(y < 0) & sm[0]]) for lg, (_, sm, y, before) in zip(logits, chunk)]
        n_free = sum(len(lg) for lg, _ in free)
        if settings.keep_weight > 0 and n_free:
            kl = sum(F.kl_div(lg.log_softmax(-1), before, reduction="sum") for lg, before in free)
            loss = loss + settings.keep_weight * kl / n_free
        return loss

    generator = torch.Generator().manual_seed(settings.seed)
    optimizer = torch.optim.AdamW(head.parameters(), lr=settings.lr, weight_decay=settings.weight_decay)
    head.train()
    epoch_losses = []
    for _ in range(settings.epochs):
        order = torch.randperm(len(fused), generator=generator).tolist()
        total, n = 0.0, 0
        for first in range(0, len(order), settings.videos_per_step):
            optimizer.zero_grad()
            loss = chunk_loss([fused[i] for i in order[first:first + settings.videos_per_step]])
            loss.backward()
            optimizer.step()
            total, n = total + float(loss.detach()), n + 1
        epoch_losses.append(total / n)
    head.eval()
    with torch.no_grad():
        hits, seen = torch.zeros(len(kinds)), torch.zeros(len(kinds))
        for z, sm, y, _ in fused:
            pred, keep = head(z, sm)[0].argmax(-1), y >= 0
            seen += torch.bincount(y[keep], minlength=len(kinds)).float()
            hits += torch.bincount(y[keep][pred[keep] == y[keep]], minlength=len(kinds)).float()
    present = seen > 0
    return KindFitResult(tuple(kinds), {k: int(c) for k, c in zip(kinds, counts.tolist())},
                         round(epoch_losses[0], 4), round(epoch_losses[-1], 4),
                         round(float((hits[present] / seen[present]).mean()), 4))
