"""The correction loop: reviewed corrections -> instruction data -> fine-tune -> held-out scores -> new version.

    version = run_correction_loop(store, "models/", progress=lambda stage, f: ..., cancel=event)
    version.before.average_map, version.after.average_map, version.checkpoint   # build_model(checkpoint)

Made for the studio's background thread: progress(stage, fraction) reports an overall fraction in
[0, 1]; ``cancel`` (a threading.Event or a callable) stops the run between steps, removes the half-made
version folder and raises TrainingCancelled. Nothing is registered unless the whole run succeeds.

Steps: export the store's reviewed videos as LLaVA conversations (``annotations.formats.export``); split
train / held-out by video (seeded, stratified threat / no threat); start from ``parent`` (a version id),
else the registry's current version, else ``base`` (a preset such as "small", or a checkpoint folder);
score it on the held-out videos; fine-tune on the train videos; refit its kind head (if it has one) on the
train videos' corrected categories (``refit_kind_head``); score again; register. Scores are the
paper's: frame-level FNR and F2, class-agnostic mAP at tIoU 0.1 / 0.3 / 0.5 and their average, with the
segments read off the per-step threat probabilities exactly as ``uprm.analysis`` does
(``cut_segments`` with the analysis defaults); with a kind head, how many held-out categories it names;
ROUGE-L and BLEU of generated causes optionally.
"""
from __future__ import annotations

import math
import shutil
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

from uprm.training.data import (
    labelled_events, load_conversations, split_by_video, threat_only_examples, video_intervals,
)
from uprm.training.errors import TrainingCancelled, TrainingDataError
from uprm.training.features import FeatureSource, VideoFeatures
from uprm.training.registry import DataSummary, EvalScores, ModelVersion, Registry, now_iso, pct_text
from uprm.training.trainer import CHECKPOINTS, TrainSettings, _is_cancelled, example_inputs, train

# One epoch, as the paper. The language side (LoRA adapter, projector) learns at 1e-4: a few corrected
# videos give a few steps. The experts, router and threat head move at the paper's 2e-5 (``fusion_lr``):
# at 1e-4, one epoch on 20 held-out composed clips with their own ground truth took the shipped default's
# mAP@0.5 on the other 20 from 91 to 69 (another split: 80 to 53), the decision rule no longer fitting its
# probabilities; at 2e-5, 92 and 79. Batch 8 as 4 micro-batches of 2: the same optimisation as the
# paper's batch with about half the peak memory of the small model on a CPU (4.8 GB at 8 in one forward).
# Any TrainSettings field passed to run_correction_loop wins; an ``lr`` given without ``fusion_lr`` sets both.
LOOP_TRAIN_DEFAULTS: dict[str, Any] = {"stage": 2, "epochs": 1, "lr": 1e-4, "fusion_lr": 2e-5, "grad_accum": 4,
                                       "show_progress": False, "checkpoint_every": 10_000, "keep_checkpoints": 1}
PROMOTE = ("always", "if_better", "never")
OBJECTIVES = ("instructions", "threat")
_STAGES = {"export": (0.0, 0.05), "features": (0.05, 0.40), "before": (0.40, 0.45), "train": (0.45, 0.90),
           "after": (0.90, 0.98), "register": (0.98, 1.0)}


def _scale(progress: Callable[[str, float], None] | None, stage: str) -> Callable[[float], None]:
    lo, hi = _STAGES[stage]
    if progress is None:
        return lambda f: None
    return lambda f: progress(stage, lo + (hi - lo) * min(max(f, 0.0), 1.0))


# ------------------------------------------------------------------------------------------- scoring


def predict_segments(model, feats: VideoFeatures, video_id: str, threshold: float | None = None,
                     min_segment_s: float | None = None, merge_gap_s: float | None = None):
    """(segments with scores, per-step probabilities) of one video, as the analysis pipeline reads them
    (a decision-rule argument left None is the model's own, from its config)."""
    import numpy as np
    import torch

    from uprm.analysis import AnalysisSettings, cut_segments, decision_rule
    from uprm.segments import Segment

    rule = decision_rule(AnalysisSettings(threshold=threshold, min_segment_s=min_segment_s,
                                          merge_gap_s=merge_gap_s), model.config).rule()
    x = feats.inputs.to(model.device)
    with torch.no_grad():
        out = model(x)
    keep = x.step_mask[0]
    prob = out.threat_prob[0][keep].float().cpu().numpy()
    times = x.times_s[0][keep].float().cpu().numpy().astype(np.float64)
    segs = []
    for first, last, start, end in cut_segments(times, prob, feats.step_s, feats.duration_s, rule):
        segs.append(Segment(video_id, start, end, "threat", round(float(prob[first:last + 1].max()), 4)))
    return segs, prob


def evaluate_videos(model, videos: Sequence[tuple[str, str]], gt: Mapping[str, Sequence[tuple[float, float]]],
                    features: FeatureSource, threshold: float | None = None, tious: Sequence[float] = (0.1, 0.3, 0.5),
                    causes: Mapping[str, str] | None = None, frame_fps: float | None = None,
                    events: Mapping[str, Sequence[tuple[float, float, str]]] | None = None) -> EvalScores:
    """Identify / locate scores of ``model`` on ``videos`` ((video_id, path) pairs) against ``gt`` intervals.

    causes: video_id -> reference attribute answer; when given, the model explains each such video's
    threat span and ROUGE-L / BLEU are computed (slow with a real LM: one generation per video).
    frame_fps: frame grid of FNR / F2 (default: the videos' own rate when they agree, else 30).
    events: video_id -> labelled segments (start_s, end_s, category); with a kind head, how many of those
    whose category is one of its kinds it names over their own bounds (``kinds_right`` of ``kinds_of``).
    """
    from uprm import metrics
    from uprm.segments import Segment

    threshold = float(model.config.threat_threshold if threshold is None else threshold)
    was_training = model.training
    model.eval()
    try:
        gt_segs, pred_segs, durations, per_video, rates = [], [], {}, {}, set()
        refs, hyps = [], []
        kind_calls: list[tuple[str, str]] | None = [] if events is not None and model.kind_head is not None else None
        for vid, path in videos:
            feats = features(vid, path)
            preds, _ = predict_segments(model, feats, vid, threshold)
            intervals = list(gt.get(vid) or ())
            gt_segs += [Segment(vid, s, e) for s, e in intervals]
            pred_segs += preds
            durations[vid] = feats.duration_s
            if feats.evidence is not None:
                rates.add(round(float(feats.evidence.video.fps), 6))
            per_video[vid] = {"gt": [[s, e] for s, e in intervals],
                              "pred": [[p.start_s, p.end_s, p.score] for p in preds]}
            if kind_calls is not None and events.get(vid):
                kind_calls += _kind_calls(model, feats, events[vid])
            if causes and causes.get(vid) and intervals:
                refs.append(causes[vid])
                hyps.append(_explain(model, feats, vid, path, intervals))
        fps = frame_fps or (rates.pop() if len(rates) == 1 else 30.0)
        fl = metrics.frame_level(gt_segs, pred_segs, durations, fps=fps)
        if gt_segs:
            det = metrics.temporal_map(gt_segs, pred_segs, tious, class_agnostic=True)
            map_at = {str(t): det.map_at[t] for t in det.tiou_thresholds}
            average = det.average_map
        else:
            map_at, average = {str(float(t)): None for t in tious}, None
        rouge = metrics.rouge_l(refs, hyps) if refs else None
        bleu = metrics.bleu(refs, hyps) if refs else None
    finally:
        model.train(was_training)

    def clean(v):
        return None if v is None or (isinstance(v, float) and math.isnan(v)) else float(v)

    return EvalScores(n_videos=len(videos), fnr=clean(fl.fnr), f2=clean(fl.f2), precision=clean(fl.precision),
                      recall=clean(fl.recall), map_at={k: clean(v) for k, v in map_at.items()},
                      average_map=clean(average), n_gt=len(gt_segs), n_pred=len(pred_segs), threshold=threshold,
                      rouge_l=rouge, bleu=bleu, per_video=per_video,
                      kinds_right=None if kind_calls is None else sum(k == named for k, named in kind_calls),
                      kinds_of=None if kind_calls is None else len(kind_calls))


def _kind_calls(model, feats: VideoFeatures, events: Sequence[tuple[float, float, str]]) -> list[tuple[str, str]]:
    """(category, kind the head names) for each of ``events`` whose category is one of the head's kinds."""
    import torch

    from uprm.training.kinds import kinds_at_events

    x = feats.inputs.to(model.device)
    with torch.no_grad():
        prob = model(x).kind_logits[0][x.step_mask[0]].softmax(-1).float().cpu().numpy()
    kinds = model.config.event_kinds
    return kinds_at_events(prob, feats.times_s(), feats.step_s, _as_kinds(events, kinds), kinds)


def _kind_of(label: str, kinds: Sequence[str]) -> str | None:
    """The kind a category names, case aside (the export spells categories canonically), or None."""
    return next((k for k in kinds if k.casefold() == label.casefold()), None)


def _as_kinds(events: Sequence[tuple[float, float, str]], kinds: Sequence[str]) -> list[tuple[float, float, str]]:
    """The events whose category is one of ``kinds``, spelt as the kind."""
    return [(s, e, kind) for s, e, label in events if (kind := _kind_of(label, kinds)) is not None]


# The kind head refit on corrected categories: a warm start, a gentler rate than the fit from scratch
# (bootstrap.fit_kinds), and steps outside the corrected segments held to what the head said before.
LOOP_KIND_FIT = dict(epochs=30, lr=1e-3, keep_weight=1.0)


def refit_kind_head(model, videos: Sequence[tuple[str, str]], events: Mapping[str, Sequence[tuple[float, float, str]]],
                    features: FeatureSource) -> dict[str, Any]:
    """Teach ``model.kind_head`` the categories annotators gave the segments of ``videos`` ((video_id, path)),
    where a category is one of the head's kinds; what happened, for the version's record."""
    from uprm.training.kinds import KindFitSettings, fit_kind_head, kind_targets

    kinds = model.config.event_kinds
    others = sorted({label for vid, _ in videos for _, _, label in events.get(vid, ())
                     if _kind_of(label, kinds) is None})
    usable = {vid: _as_kinds(events.get(vid, ()), kinds) for vid, _ in videos}
    record = {"kinds": list(kinds), "segments": sum(map(len, usable.values())),
              "other_categories": others}  # categories the head has no output for: not learnt
    if not record["segments"]:
        return {**record, "refit": False}
    data = []
    for vid, path in videos:
        feats = features(vid, path)
        data.append((feats.inputs, kind_targets(feats.times_s(), usable[vid], kinds)))
    fit = fit_kind_head(model, data, KindFitSettings(**LOOP_KIND_FIT))
    return {**record, "refit": True, "steps_by_kind": fit.steps_by_kind, "loss_first_epoch": fit.loss_first_epoch,
            "loss_last_epoch": fit.loss_last_epoch}


def _explain(model, feats: VideoFeatures, vid: str, path: str, intervals) -> str:
    from uprm.instructions import ATTRIBUTE
    from uprm.training.data import TrainingExample

    span = (min(s for s, _ in intervals), max(e for _, e in intervals))
    x, _ = example_inputs(TrainingExample(vid, path, None, None, span_s=span), feats)
    return str(model.answer(x, ATTRIBUTE, max_new_tokens=48))


def promotion_verdict(after: EvalScores, before: EvalScores) -> tuple[bool, str]:
    """Whether the fine-tuned model is at least as good as its parent on the held-out videos, and why.

    Better means: average mAP, then F2, at least the parent's, and, when both have a kind head, at
    least as many held-out categories named (a refit that names fewer undoes corrections it was not
    trained on, which the detection scores cannot see)."""
    def key(s: EvalScores) -> tuple[float, float]:
        return (s.average_map if s.average_map is not None else -1.0, s.f2 if s.f2 is not None else -1.0)

    scores = (f"held-out average mAP {pct_text(before.average_map)} -> {pct_text(after.average_map)}, "
              f"F2 {pct_text(before.f2)} -> {pct_text(after.f2)}")
    if key(after) < key(before):
        return False, f"{scores}: lower than its parent's"
    if before.kinds_right is not None and after.kinds_right is not None and after.kinds_right < before.kinds_right:
        return False, (f"{scores}, but the kind head names {after.kinds_right} of {after.kinds_of} held-out "
                       f"categories, its parent {before.kinds_right} of {before.kinds_of}")
    kinds = ("" if after.kinds_right is None or before.kinds_right is None else
             f", categories named {before.kinds_right} -> {after.kinds_right} of {after.kinds_of}")
    if after.average_map is None and before.average_map is None:  # held-out videos hold no threat
        return True, f"{scores}{kinds}: no held-out threat to judge by, so it counts as at least its parent's"
    return True, f"{scores}{kinds}: at least its parent's"


# ------------------------------------------------------------------------------------------- the loop


def run_correction_loop(store, models_root: str | Path, base: str = "small",
                        progress: Callable[[str, float], None] | None = None, cancel=None, *,
                        parent: str | None = None, heldout_fraction: float = 0.25, split_seed: int = 0,
                        features: FeatureSource | None = None, perception_settings=None,
                        cache_dir: str | Path | None = None, threshold: float | None = None, text_metrics: bool = False,
                        promote: str = "if_better", objective: str = "instructions", notes: str = "",
                        **train_overrides: Any) -> ModelVersion:
    """Fine-tune on the store's reviewed corrections and register the result as a new model version.

    train_overrides: TrainSettings fields (lr, epochs, batch_size, grad_accum, alpha, max_steps, seed,
    ablation, num_threads, ...) over LOOP_TRAIN_DEFAULTS. promote: "if_better" makes the new version
    current when ``promotion_verdict`` finds it at least as good as its parent on the held-out videos;
    "always"; "never". The version records the verdict either way (``ModelVersion.promotion``).
    objective: "instructions" trains on the exported conversations (L_ce + alpha L_z + threat BCE, the
    paper's stage 2); "threat" trains only what the identify / locate scores read (per-step threat BCE +
    alpha L_z, one example per video, no language model pass): much faster on a CPU, but the LoRA
    adapter and the explanations do not learn.
    """
    from annotations.formats import export

    from uprm.model import build_model

    if promote not in PROMOTE:
        raise TrainingDataError(f"promote must be one of {PROMOTE}, got {promote!r}")
    if objective not in OBJECTIVES:
        raise TrainingDataError(f"objective must be one of {OBJECTIVES}, got {objective!r}")
    unknown = sorted(set(train_overrides) - set(TrainSettings.__dataclass_fields__))
    if unknown:
        raise TrainingDataError(f"unknown training setting(s) {unknown}; "
                                f"known: {sorted(TrainSettings.__dataclass_fields__)}")
    merged = {**LOOP_TRAIN_DEFAULTS, **train_overrides}
    if "lr" in train_overrides and "fusion_lr" not in train_overrides:
        merged["fusion_lr"] = None  # one rate for everything, as the caller asked
    if "grad_accum" not in train_overrides:  # the default split must divide a batch size the caller chose
        batch = int(merged.get("batch_size", TrainSettings.batch_size))
        merged["grad_accum"] = math.gcd(batch, LOOP_TRAIN_DEFAULTS["grad_accum"])
    settings = TrainSettings(**merged)
    registry = Registry(models_root)
    if parent is not None:
        start = registry.get(parent)
    else:
        start = registry.current()
    source = start.checkpoint if start else base
    parent_label = start.version_id if start else str(base)
    lineage = start.base if start else str(base)

    version_id, folder = registry.reserve()
    try:
        def check(stage: str) -> None:
            if _is_cancelled(cancel):
                raise TrainingCancelled(stage)

        # 1. export and split
        _scale(progress, "export")(0.0)
        exported = export(store, "llava", folder / "data", name="corrections")
        if exported.videos < 2:
            raise TrainingDataError(f"the store has {exported.videos} reviewed video(s): review at least 2 "
                                    "(one to train on, one to check the result)")
        examples = load_conversations(exported.paths[0])
        skipped: list[str] = []
        if features is None:  # dataset references imported without their files cannot be perceived
            skipped = sorted({ex.video_id for ex in examples if not Path(ex.video_path).is_file()})
            examples = [ex for ex in examples if ex.video_id not in set(skipped)]
            if len({ex.video_id for ex in examples}) < 2:
                have = len({ex.video_id for ex in examples})
                raise TrainingDataError(f"only {have} reviewed video(s) have their file on this machine "
                                        f"({len(skipped)} without, e.g. {skipped[:3]}): review at least 2 you have")
        intervals = video_intervals(examples)
        events = labelled_events(exported.paths[0])
        paths = {ex.video_id: ex.video_path for ex in examples}
        positive = [v for v, iv in intervals.items() if iv]
        train_ids, heldout_ids = split_by_video(intervals, heldout_fraction, split_seed, positive)
        train_examples = [ex for ex in examples if ex.video_id in set(train_ids)]
        if objective == "threat":
            train_examples = threat_only_examples(train_examples)
        causes = {ex.video_id: ex.answer for ex in examples if ex.kind == "attribute"} if text_metrics else None
        _scale(progress, "export")(1.0)
        check("export")

        # 2. the parent model and every video's features (perception runs once per video, cached)
        model = build_model(source)
        if features is None:
            from uprm.training.features import PerceptionFeatures

            features = PerceptionFeatures(model.config, perception_settings, cache_dir)
        say = _scale(progress, "features")
        for i, vid in enumerate(sorted(intervals)):
            check("features")
            say(i / len(intervals))
            features(vid, paths[vid])
        say(1.0)

        # 3. before, train, after
        heldout = [(v, paths[v]) for v in heldout_ids]
        gt = {v: intervals[v] or () for v in heldout_ids}
        before = evaluate_videos(model, heldout, gt, features, threshold, causes=causes, events=events)
        _scale(progress, "before")(1.0)
        check("before")
        say_train = _scale(progress, "train")
        result = train(model, train_examples, folder, settings, features,
                       progress=lambda stage, f: say_train(f) if stage == "train" else None, cancel=cancel,
                       run_info={"loop": {"version_id": version_id, "parent": parent_label}})
        kinds = None
        if model.kind_head is not None:  # the fusion moved under it, and categories may have been corrected
            kinds = refit_kind_head(model, [(v, paths[v]) for v in train_ids], events, features)
            if kinds["refit"]:
                model.save_pretrained(folder)
        after = evaluate_videos(model, heldout, gt, features, threshold, causes=causes, events=events)
        _scale(progress, "after")(1.0)
        check("after")

        # 4. register
        shutil.rmtree(folder / CHECKPOINTS, ignore_errors=True)  # the final model is saved beside them
        last_correction = None
        for v in store.videos():
            hist = store.history(v.id)
            if hist:
                last_correction = max(last_correction or 0, hist[-1].id)
        data = DataSummary(
            train_videos=sorted(train_ids), heldout_videos=sorted(heldout_ids), train_examples=len(train_examples),
            train_segments=sum(len(intervals[v] or ()) for v in train_ids),
            heldout_segments=sum(len(intervals[v] or ()) for v in heldout_ids),
            export_path=str(exported.paths[0]), store_path=str(getattr(store, "path", "")),
            last_correction_id=last_correction, split_seed=split_seed, skipped_videos=skipped)
        better, why = promotion_verdict(after, before)
        make_current = promote == "always" or (promote == "if_better" and better)
        if promote != "if_better":
            why = f"promote={promote!r} ({why})"
        version = ModelVersion(
            version_id=version_id, parent=parent_label, created_at=now_iso(), checkpoint=str(folder),
            base=lineage, data=data, before=before, after=after,
            train={"steps": result.steps, "examples_seen": result.examples_seen,
                   "elapsed_s": round(result.elapsed_s, 3),
                   "final": result.final, "settings": settings.schedule_fields(), "objective": objective,
                   "kind_head": kinds},
            promoted=make_current, promotion=why, notes=notes)
        registry.register(version, make_current=make_current)
        _scale(progress, "register")(1.0)
        return version
    except BaseException:
        shutil.rmtree(folder, ignore_errors=True)
        raise


def load_version(models_root: str | Path, version_id: str | None = None):
    """The model of ``version_id`` (default: the current version), ready for analysis."""
    from uprm.model import build_model

    registry = Registry(models_root)
    version = registry.get(version_id) if version_id else registry.current()
    if version is None:
        raise TrainingDataError(f"{models_root} has no current model version yet: run the correction loop first")
    model = build_model(version.checkpoint)
    model.model_id = f"{version.version_id} ({Path(version.checkpoint).name})"
    return model
