"""Regenerate every number in assets/MODEL_CARD.md: evaluate the shipped default checkpoint honestly.

    python assets/build_default_model.py      # first (composes the sets, trains, ships the weights)
    python assets/evaluate_default_model.py   # writes assets/default_model_eval.json and the card's results

What it measures (all with the weights as shipped, float16 on disk):
 - the decision rule (threshold, minimum segment, merge gap, hysteresis level) the checkpoint ships
   with, which the build tuned on the VALIDATION set (vtest.avi 64.5-79.5 s, other seeds, plus chats)
   with the model's FOLD twin (same recipe, trained without that window), and the twin's scores there;
 - held-out composed clips (other footage, other seeds): frame-level FNR and F2, class-agnostic mAP at
   tIoU 0.1 / 0.3 / 0.5 and their average, ROUGE-L / BLEU / Sentence-BERT cosine of generated causes,
   over every held-out draw pooled (S_TESTS: one draw's 30-40 events moved mAP@0.5 by 30 points from
   draw to draw, so the targets are judged on the pool) and, for the detection figures, draw by draw;
 - real normal footage (vtest.avi in full and bikes.mp4: every threat-free video there is; the 30 s
   sample is vtest.avi's first 30 s, so it is not counted twice): false alarms (every predicted segment)
   per hour and per 10 minutes; the sample's own alarms on their own line (it is re-encoded as H.264,
   which changes what the front-ends report);
 - the paper's ablation rows: w/o HPE, ORE, VBE, UPE as inference-time switches on the shipped weights
   (decision rule re-tuned per row on the validation set by the fold twin with the same switch); w/o PTR
   as a SEPARATELY TRAINED model (the threat-only warm-up with no_ptr), compared with the full model's
   own warm-up (same recipe and random start), each with the rule its own fold twin picked;
 - the seed spread: that warm-up, and the w/o-PTR one, from each of the build's random starts
   (START_SEEDS; the build picked the default's start among them on validation), each at its twin's rule,
   so a difference between rows can be weighed against what the seed alone moves, and PTR's effect is
   read seed by seed (same start, with and without);
 - where predicted bounds miss the held-out events (start and end errors, events reported together);
 - the gate balance (mean R per expert and coarse share 1 - G on the held-out set) of the default and
   of each alpha variant in assets/alpha_variants/;
 - ranking quality before any rule (frame ROC AUC on validation and held-out, per event kind), the same
   for a gradient-boosted tree on hand-made features of the same evidence (assets/evidence_probe.py),
   and operating points: held-out FNR / mAP against false alarms on real footage at other thresholds.
"""
from __future__ import annotations

import argparse
import json
import math
import os
import sys
import time
from dataclasses import replace
from pathlib import Path

import av  # noqa: F401  (before anything that may import decord)

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from build_default_model import (  # noqa: E402  (the build's sets, windows and rule tuning, re-run per ablation row)
    FOLD_WINDOWS, S_VALS, START_SEEDS, TRAIN_WINDOWS, VAL_WINDOWS, fold_dir, load_sets, no_ptr_run_dir, say,
    seed_run_dir, tuned_rule, work_dir,
)
from uprm import bootstrap as bs  # noqa: E402

MEDIA = ROOT.parent / "shared" / "media"
NORMAL_FOOTAGE = [MEDIA / "vtest.avi", MEDIA / "bikes.mp4"]
# vtest.avi 0-30 s re-encoded as H.264: what the studio shows; reported on its own, not counted twice
STUDIO_SAMPLE = ROOT / "assets" / "sample_vtest_30s.mp4"
CARD = ROOT / "assets" / "MODEL_CARD.md"
RESULTS_JSON = ROOT / "assets" / "default_model_eval.json"
VARIANTS = ROOT / "assets" / "alpha_variants"
START, END = "<!-- results:start (written by assets/evaluate_default_model.py: do not edit by hand) -->", \
    "<!-- results:end -->"


def score_set(model, composed: bs.ComposedSet, evid: dict, ablation=()) -> list[bs.Scored]:
    return [bs.score_video(model, evid[c.path], c.video_id, ablation) for c in composed.clips]


def twin_ruled_row(folder: Path, val, ev_val, test, ev_test) -> dict | None:
    """Held-out row of the separately trained run in ``folder`` at the rule its fold twin picks on
    validation, with the twin's validation objective there; None unless both runs are there."""
    from uprm.model import build_model

    if not ((folder / "config.json").is_file() and (fold_dir(folder) / "config.json").is_file()):
        return None
    rule, at_rule = tuned_rule(fold_dir(folder), val, ev_val)
    return {**detection_row(build_model(str(folder)), test, ev_test, rule),
            "validation_objective": bs.objective(at_rule)}


def detection_row(model, test, ev_test, rule: bs.DecisionRule, ablation=()) -> dict:
    """Held-out scores of ``model`` (with ``ablation`` switched on) under ``rule``."""
    held = score_set(model, test, ev_test, ablation)
    return {**bs.detection_scores(test, held, rule), "rule": vars(rule), "gates": bs.gate_balance(held),
            "auc": bs.ranking_scores(test, held)["auc"]}


# thresholds a user may pick instead of the shipped one (python -m uprm analyze --threshold), to show
# what each costs: the trade between missed threats and false alarms on real footage
OPERATING_THRESHOLDS = (0.25, 0.3, 0.4, 0.5, 0.6, 0.7, 0.8)


def draw_rows(draws: list[bs.ComposedSet], held: list[bs.Scored], rule: bs.DecisionRule) -> dict:
    """Detection figures of each held-out draw on its own (the pooled ones hide how far they vary) and
    their mean over draws."""
    by_id = {s.video_id: s for s in held}
    rows = []
    for d in draws:
        scored = [by_id[c.video_id] for c in d.clips]
        det = bs.detection_scores(d, scored, rule)
        rows.append({"seed": d.seed, "clips": len(d.clips), "threat_events": det["n_gt"], "fnr": det["fnr"],
                     "f2": det["f2"], "map": det["map"], "map_avg": det["map_avg"],
                     "threat_free_flagged": det["threat_free_flagged"], "threat_free_clips": det["threat_free_clips"],
                     "auc": bs.ranking_scores(d, scored)["auc"]})
    mean = {k: sum(r[k] for r in rows) / len(rows) for k in ("fnr", "f2", "map_avg", "auc")}
    mean["map"] = {t: sum(r["map"][t] for r in rows) / len(rows) for t in rows[0]["map"]}
    return {"draws": rows, "mean": mean}


SPREAD_METRICS = {"auc": lambda r: r["auc"], "fnr": lambda r: r["fnr"], "map_0.5": lambda r: r["map"]["0.5"],
                  "map_avg": lambda r: r["map_avg"], "threat_free_flagged": lambda r: r["threat_free_flagged"],
                  "validation_objective": lambda r: r["validation_objective"],
                  **{g: (lambda r, g=g: r["gates"][g]) for g in ("R_hpe", "R_ore", "coarse_share")}}


def seed_spread(seeds: dict[int, dict]) -> dict:
    """Held-out figures of the runs ``seeds`` (seed -> twin_ruled_row), per seed and their range; {} under two."""
    if len(seeds) < 2:
        return {}
    return {"seeds": sorted(seeds),
            "runs": {f"seed{k}": {m: f(v) for m, f in SPREAD_METRICS.items()} | {"rule": v["rule"]}
                     for k, v in seeds.items()},
            "range": {m: [min(f(v) for v in seeds.values()), max(f(v) for v in seeds.values())]
                      for m, f in SPREAD_METRICS.items()}}


def environment() -> dict:
    """Where the evaluation ran: the same code, clips and weights may score differently on another CPU or
    library version, and this says which one produced the card."""
    import platform
    from importlib.metadata import PackageNotFoundError, version

    cpuinfo = Path("/proc/cpuinfo")
    names = [line.split(":", 1)[1].strip() for line in (cpuinfo.read_text().splitlines() if cpuinfo.is_file() else ())
             if line.startswith("model name")]
    cpu = names[0] if names else platform.processor()
    packages = {}
    for name in ("torch", "numpy", "opencv-python-headless", "av", "transformers", "peft", "ai-edge-litert", "mediapipe"):
        try:
            packages[name] = version(name)
        except PackageNotFoundError:
            pass
    return {"python": platform.python_version(), "machine": platform.machine(), "cpu": cpu, "cores": os.cpu_count(),
            "packages": packages}


def fingerprints(sets) -> dict[str, str]:
    """sha256 of each composed set's pixels and of the shipped weights' tensors: equal between two builds
    iff they composed the same clips and trained the same model."""
    from uprm.model.io import SMALL_CHECKPOINT, weights_sha256

    out = {name: getattr(sets, name).fingerprint() for name in ("train", "fold", "val", "heldout")}
    for f in ("uprm.safetensors", "lora_adapter/adapter_model.safetensors"):
        out[f] = weights_sha256(SMALL_CHECKPOINT / f)
    return out


def operating_points(test, held, normal, rule: bs.DecisionRule) -> list[dict]:
    rows = []
    for t in OPERATING_THRESHOLDS:
        r = replace(rule, threshold=t)  # the hysteresis level, too, as analyses keep it (only below t)
        d, fa = bs.detection_scores(test, held, r), bs.false_alarms(normal, r)
        rows.append({"threshold": t, "fnr": d["fnr"], "f2": d["f2"], "map_0.5": d["map"]["0.5"],
                     "map_avg": d["map_avg"], "threat_free_flagged": d["threat_free_flagged"],
                     "threat_free_clips": d["threat_free_clips"], "false_alarms_per_10_min": fa["per_10_min"],
                     "flagged_fraction": fa["flagged_fraction"]})
    return rows


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--work", type=Path, default=work_dir(), help="folder the build script wrote (default %(default)s)")
    parser.add_argument("--no-text", action="store_true", help="skip cause generation and text metrics")
    args = parser.parse_args()
    import torch

    from uprm.model import build_model

    torch.set_num_threads(2)
    t0 = time.perf_counter()
    sets = load_sets(args.work)
    train, val, test = sets.train, sets.val, sets.heldout
    runs = args.work / "runs"
    if not (fold_dir(runs / "default") / "config.json").is_file():
        raise bs.BootstrapError(f"{fold_dir(runs / 'default')} holds no trained model: run "
                                "assets/build_default_model.py first (its fold twin picks the decision rule)")
    build_report_path = args.work / "build_report.json"
    build = json.loads(build_report_path.read_text()) if build_report_path.is_file() else {}
    ev_val, _ = bs.perceive_set(val, progress=say)
    ev_test, t_test = bs.perceive_set(test, progress=say)
    ev_fold, _ = bs.perceive_set(sets.fold, progress=say)  # the fold twin's clips (kind head, evidence probe)
    ev_normal, t_normal = bs.perceive_all([str(p) for p in NORMAL_FOOTAGE + [STUDIO_SAMPLE] if p.is_file()],
                                          progress=say)

    model = build_model("small")
    if model.model_id != bs.CHECKPOINT_VERSION:
        raise bs.BootstrapError(f"build_model('small') gave {model.model_id!r}, not the shipped "
                                f"{bs.CHECKPOINT_VERSION}: run assets/build_default_model.py first")
    results: dict = {"model_id": model.model_id, "train_set": train.summary(), "fold_set": sets.fold.summary(),
                     "val_set": val.summary(), "heldout_set": test.summary()}

    # the decision rule the checkpoint ships with: the build tuned it on the validation set with the fold
    # twin, for which that footage is new; the twin's scores there (the shipped model trained on that footage)
    rule = bs.DecisionRule.from_config(model.config)
    twin_dir = fold_dir(runs / "default")
    twin = build_model(str(twin_dir))
    val_scored = score_set(twin, val, ev_val)
    results["decision_rule"] = {"rule": vars(rule), "tuned_on": "validation set, by the fold twin (in the build)",
                                "objective": bs.OBJECTIVE, "validation": bs.detection_scores(val, val_scored, rule)}
    say(f"decision rule {rule}")

    held = score_set(model, test, ev_test)
    results["heldout"] = bs.detection_scores(test, held, rule)
    results["heldout_by_draw"] = draw_rows(sets.heldout_draws, held, rule)
    # what each held-out clip was and what the model said on it, so that two evaluations that disagree can
    # be traced to the clips (pixels) or the weights that differ
    results["heldout_clips"] = [{"video_id": c.video_id, "sha256": ev_test[c.path].video.content_hash,
                                 "max_prob": round(float(h.prob.max()), 4),
                                 "segments_s": [[g.start_s, g.end_s] for g in bs.predicted_segments(h, rule)]}
                                for c, h in zip(test.clips, held)]
    results["fingerprints"] = fingerprints(sets)
    results["heldout"]["gates"] = bs.gate_balance(held)
    results["heldout"]["localisation"] = bs.localisation(test, held, rule)
    results["ranking"] = {"validation": bs.ranking_scores(val, val_scored),  # the fold twin's
                          "heldout": bs.ranking_scores(test, held)}
    scored_by_id = {s.video_id: s for s in held}
    if not args.no_text:
        t1 = time.perf_counter()
        pairs = bs.cause_pairs(model, test, ev_test, scored_by_id, rule)
        results["heldout"]["text"] = bs.text_metrics(pairs)
        results["heldout"]["text"]["generation_s"] = round(time.perf_counter() - t1, 1)
        results["heldout"]["text"]["kinds_named"] = bs.cause_kinds(pairs)
        results["cause_pairs"] = pairs
    # which kind each event is: the shipped kind head (and, for comparison, the evidence rules the studio
    # used before it) held-out, and the fold twin's head, as the build fitted it to pick its epochs, on validation
    results["categories"] = {"heldout": bs.category_scores(test, ev_test, held, model.config.event_kinds, rule)}
    if model.config.event_kinds:
        from uprm.training.kinds import KindFitSettings

        chosen_kind = (build.get("kind_head") or {}).get("chosen_epochs") or KindFitSettings().epochs
        bs.fit_kinds(twin, [sets.fold], ev_fold, KindFitSettings(epochs=chosen_kind))
        results["categories"]["validation"] = bs.category_scores(val, ev_val, score_set(twin, val, ev_val),
                                                                 twin.config.event_kinds, rule)
        twin = build_model(str(twin_dir))  # the ablation rows below tune rules with the twin as the build did
    say(f"categories: {json.dumps(results['categories'])}")
    say(f"held-out: {json.dumps({k: v for k, v in results['heldout'].items() if k != 'gates'})}")

    normal = [bs.score_video(model, ev_normal[str(p)], p.stem) for p in NORMAL_FOOTAGE if str(p) in ev_normal]
    results["normal_footage"] = bs.false_alarms(normal, rule)
    results["operating_points"] = operating_points(test, held, normal, rule)
    if str(STUDIO_SAMPLE) in ev_normal:
        results["studio_sample"] = bs.false_alarms([bs.score_video(model, ev_normal[str(STUDIO_SAMPLE)],
                                                                   STUDIO_SAMPLE.stem)], rule)
    say(f"normal footage: {results['normal_footage']['n_false_alarms']} false alarm(s) in "
        f"{results['normal_footage']['total_s']} s")

    rows = {}
    own = model.ablation.active  # switches the default was trained with (they stay on in every row)
    for name, ablation in bs.ABLATION_ROWS:
        row_rule = tuned_rule(twin, val, ev_val, ablation)[0] if ablation else rule
        rows[name] = detection_row(model, test, ev_test, row_rule, ablation)
        if ablation and set(ablation) <= set(own):
            rows[name]["how"] = f"= the shipped default, which is trained with {ablation[0]}"
        else:
            rows[name]["how"] = ("shipped weights" + (f", inference-time switch {ablation[0]}" if ablation else "")
                                 + (f" (on top of the default's own {', '.join(own)})" if own else ""))
    chosen = (build.get("warmup_selection") or {}).get("chosen_epochs")
    start = (build.get("start_selection") or {}).get("chosen_seed", 0)  # the random start the default continued
    warm_dir = seed_run_dir(runs, chosen, start) if chosen else runs / "warmup"
    for name, folder in (("full (warm-up only)", warm_dir),
                         ("w/o PTR (trained, warm-up only)", no_ptr_run_dir(runs, start))):
        if (row := twin_ruled_row(folder, val, ev_val, test, ev_test)) is not None:
            rows[name] = row
            row["how"] = (f"separately trained model {folder.name} (threat-only warm-up, same recipe"
                                 f"{', + no_ptr' if 'no_ptr' in folder.name else ''}), no instruction phase; rule "
                                 "from its fold twin")
    arms = {"full": (rows.get("full (warm-up only)"), lambda seed: seed_run_dir(runs, chosen, seed)),
            "no_ptr": (rows.get("w/o PTR (trained, warm-up only)"), lambda seed: no_ptr_run_dir(runs, seed))}
    for arm, (row0, run_dir) in arms.items() if chosen else ():
        seeds = {seed: row0 if seed == start else twin_ruled_row(run_dir(seed), val, ev_val, test, ev_test)
                 for seed in START_SEEDS}
        if spread := seed_spread({k: v for k, v in seeds.items() if v}):
            what = "the warm-up-only model" + (" trained w/o PTR" if arm == "no_ptr" else "")
            results["seed_spread" + ("" if arm == "full" else f"_{arm}")] = {
                "what": f"{what} ({chosen} epochs) from random starts {spread['seeds']}, each at its fold twin's rule",
                **spread}
    results["ablations"] = rows

    variants = {}
    for folder in sorted(VARIANTS.glob("alpha_*")) if VARIANTS.is_dir() else []:
        m = build_model(str(folder))
        v = detection_row(m, test, ev_test, bs.DecisionRule.from_config(m.config))
        variants[folder.name] = {"alpha": m.config.alpha, "model_id": m.model_id, **v}
        del m
    results["alpha_variants"] = variants

    say("evidence probe: a gradient-boosted tree on hand-made features of the same evidence")
    from evidence_probe import run as probe_evidence

    # it learns from the fold set, as the twin whose validation AUC it is compared with
    results["evidence_probe"] = probe_evidence([(sets.fold, ev_fold), (val, ev_val), (test, ev_test)], model.config)

    results["perception_s"] = {"heldout": round(t_test, 1), "normal": round(t_normal, 1)}
    results["build"] = {k: build.get(k) for k in ("threat_recipe", "recipe", "train_perception_s",
                                                  "warmup_selection", "start_selection", "decision_rule",
                                                  "warmup_run", "default_run", "fold_default_run", "no_ptr_runs",
                                                  "kind_head",
                                                  "default_files",
                                                  "started", "finished")}
    results["environment"] = environment()
    results["evaluation_s"] = round(time.perf_counter() - t0, 1)
    results["evaluated_at"] = time.strftime("%Y-%m-%d %H:%M:%S")
    RESULTS_JSON.write_text(json.dumps(results, indent=1, default=_json_default) + "\n")
    write_card_section(results)
    say(f"wrote {RESULTS_JSON} and the results section of {CARD}")
    return 0


def _json_default(x):
    if isinstance(x, float) and math.isnan(x):
        return None
    return str(x)


def pct(x) -> str:
    return "n/a" if x is None or (isinstance(x, float) and math.isnan(x)) else f"{100 * x:.1f}"


def num(x, fmt="{:.3f}") -> str:
    return "n/a" if x is None or (isinstance(x, float) and math.isnan(x)) else fmt.format(x)


def _window(w: bs.SourceWindow) -> str:
    return f"{Path(w.path).name} {w.start_s:g}-{w.end_s:g} s"


def localisation_lines(loc: dict | None) -> list[str]:
    """Why mAP at tIoU 0.5 falls short of 0.1: the bounds' errors and the events reported together."""
    if not loc or not loc["n_found"]:
        return []
    return [f"Bounds of the held-out events a predicted segment overlaps ({loc['n_found']} of {loc['n_gt']}; "
            "predicted minus true, median): start {:+.1f} s, end {:+.1f} s (absolute {:.1f} s and {:.1f} s). "
            .format(loc["start_error_s"], loc["end_error_s"], loc["abs_start_error_s"], loc["abs_end_error_s"])
            + f"{loc['n_joined']} of them share their segment with another event of the clip (two threats "
            "reported as one alarm).", ""]


def category_lines(cats: dict, named: dict | None) -> list[str]:
    """Which kind each event is said to be: the shown category and the generated cause's wording."""
    h = cats.get("heldout")
    if not h:
        return []

    def right(x: dict) -> str:
        return f"{x['right']} of {x['of']}"

    def confusion(x: dict) -> str:
        return "; ".join(f"{k} -> " + ", ".join(f"{c} {n}" for c, n in v.items()) for k, v in x["confusion"].items())

    out = [f"**Which kind of threat** ({h['n_events']} held-out events; the category the studio shows for the "
           f"predicted segment overlapping each event most): right for {right(h['shown'])} ("
           + ("the kind head" if h["at_gt_bounds"]["of"] else "rules over the evidence")
           + f"; {confusion(h['shown'])})."]
    if h["at_gt_bounds"]["of"]:
        v = cats.get("validation")
        out[-1] += (f" Over each event's own GT bounds the kind head names {right(h['at_gt_bounds'])}"
                    + (f" (validation, its fold twin: {right(v['at_gt_bounds'])})" if v else "")
                    + f". The rules over the evidence the studio used before would name {right(h['rules'])} of "
                    f"the same segments ({confusion(h['rules'])}).")
    if named:
        out[-1] += (f" The generated causes name the event's kind alone for {named['right']} of {named['n']}, "
                    f"among others for {named['mixed']}, only other kinds for {named['wrong']}, no kind for "
                    f"{named['unnamed']} (by the compositor's wording for each kind).")
    return out + [""]


def _machine(env: dict) -> str:
    pk = env.get("packages", {})
    return (f"{env['cpu']} ({env['cores']} cores, {env['machine']}), Python {env['python']}"
            + "".join(f", {k} {pk[k]}" for k in ("torch", "opencv-python-headless", "av") if k in pk))


def write_card_section(r: dict) -> None:
    h = r["heldout"]
    nf = r["normal_footage"]
    t = h.get("text", {})
    met = lambda ok: "met" if ok else "NOT met"  # noqa: E731
    lines = [START, "", f"Evaluated {r['evaluated_at']} by `python assets/evaluate_default_model.py` "
             f"(model `{r['model_id']}`, weights as shipped; full JSON in `assets/default_model_eval.json`)"
             + (f" on {_machine(r['environment'])}" if r.get("environment") else "") + ".", ""]
    ts, fs, vs, hs = r["train_set"], r["fold_set"], r["val_set"], r["heldout_set"]
    draws, mean = r["heldout_by_draw"]["draws"], r["heldout_by_draw"]["mean"]

    def kinds(x: dict) -> str:
        return ", ".join(f"{k} {v}" for k, v in sorted(x["events_by_kind"].items()))

    lines += ["**Data.** Training: " + f"{ts['clips']} composed clips, {ts['seconds']} s, {ts['threat_events']} threat "
              f"events in {ts['clips_with_threat']} clips ({kinds(ts)}), {ts['harmless_events']} harmless pasted "
              f"walkers; footage {', '.join(map(_window, TRAIN_WINDOWS))}. Fold (the same recipe on the training "
              f"footage without the validation window, for the fold twins that pick the warm-up length and every "
              f"decision rule): {fs['clips']} clips, {fs['seconds']} s, {fs['threat_events']} threat events; footage "
              f"{', '.join(map(_window, FOLD_WINDOWS))}. Validation: {len(S_VALS)} draws (seeds "
              f"{', '.join(map(str, S_VALS))}) and the chats, pooled: {vs['clips']} clips "
              f"({vs.get('harmless_by_kind', {}).get('chat', 0)} of them two people standing together talking, "
              f"`chat`), {vs['seconds']} s, {vs['threat_events']} threat events ({kinds(vs)}); footage "
              f"{', '.join(map(_window, VAL_WINDOWS))} (its own sprites), other seeds. Held-out: {len(draws)} draws "
              f"(seeds {', '.join(str(d['seed']) for d in draws)}), pooled {hs['clips']} clips, {hs['seconds']} s, "
              f"{hs['threat_events']} threat events in {hs['clips_with_threat']} clips ({kinds(hs)}), "
              f"{hs['harmless_events']} harmless walkers; footage {', '.join(hs['sources'])} (vtest.avi 0-30 s), "
              "other seeds: neither the model nor its decision rule saw it.", ""]
    if r.get("fingerprints"):
        fp = r["fingerprints"]
        lines += ["**Fingerprints** (sha256, first 12 hex digits; a rebuild that composed the same clips and "
                  "trained the same weights shows the same; the weights' over their tensors, as the files' header "
                  "order varies from save to save): clips " + ", ".join(
                      f"{k} `{fp[k][:12]}`" for k in ("train", "fold", "val", "heldout")) + "; weights " + ", ".join(
                      f"`{k}` `{v[:12]}`" for k, v in fp.items() if k.endswith(".safetensors")) + ".", ""]
    b = r.get("build") or {}
    if b.get("default_run"):
        w, d = b.get("warmup_run") or {}, b["default_run"]
        lines += [f"**Training.** Warm-up (threat-only, {b['threat_recipe']['epochs']} epochs, lr "
                  f"{b['threat_recipe']['lr']:g}): {w.get('elapsed_s', 'n/a')} s, {w.get('loss', {}).get('steps', 'n/a')} "
                  f"steps, threat BCE {num(w.get('loss', {}).get('first', {}).get('loss_threat'))} -> "
                  f"{num(w.get('loss', {}).get('last', {}).get('loss_threat'))}. Instruction phase "
                  f"(`python -m uprm train`, {b['recipe']['epochs']} epoch, lr {b['recipe']['lr']:g}, batch "
                  f"{b['recipe']['batch_size']}): {d['elapsed_s']} s, {d['loss']['steps']} steps, total loss "
                  f"{num(d['loss']['first']['loss'])} -> {num(d['loss']['last']['loss'])} (L_ce "
                  f"{num(d['loss']['first'].get('loss_ce'))} -> {num(d['loss']['last'].get('loss_ce'))}). "
                  f"Perception of the training clips in the last build run: {num(b.get('train_perception_s'), '{:.0f}')} s "
                  "(evidence is cached per clip, so a rebuild reuses it). "
                  f"Checkpoint files: " + ", ".join(f"`{k}` {v / 1e6:.2f} MB" for k, v in (b.get('default_files') or {}).items())
                  + ".", ""]
        sel = b.get("warmup_selection") or {}
        if sel.get("candidates"):
            lines += [f"**Warm-up length**, picked by the fold twins on the validation set ({bs.OBJECTIVE}, "
                      "each at its own tuned rule): " + "; ".join(f"{c['epochs']} epochs {c['objective']:.3f}" for c in sel["candidates"])
                      + f" -> {sel['chosen_epochs']} epochs.", ""]
        st = b.get("start_selection") or {}
        if len(st.get("candidates") or ()) > 1:
            lines += ["**Random start** (model weights and data order) of that warm-up, picked the same way: "
                      + "; ".join(f"seed {c['seed']} {c['objective']:.3f}" for c in st["candidates"])
                      + f" -> seed {st['chosen_seed']}; the instruction phase continues from it.", ""]
        kh = b.get("kind_head") or {}
        if kh.get("candidates"):
            fit = kh["fit"]
            lines += [f"**Kind head**, fitted on the trained default with its fusion frozen, on the training and "
                      f"fold clips' GT events ({', '.join(f'{k} {n}' for k, n in fit['steps_by_kind'].items())} "
                      f"steps; loss {fit['loss_first_epoch']:.3f} -> {fit['loss_last_epoch']:.3f}, balanced step "
                      f"accuracy there {pct(fit['step_accuracy'])} %). Epochs picked by the fold twin's head "
                      "(fitted on the fold clips) on validation, GT events whose kind it names at their bounds: "
                      + "; ".join(f"{c['epochs']} epochs {c['validation_at_gt_bounds']['right']}/"
                                  f"{c['validation_at_gt_bounds']['of']}" for c in kh["candidates"])
                      + f" -> {kh['chosen_epochs']} epochs.", ""]
    dr = r["decision_rule"]
    ru, dv = dr["rule"], dr["validation"]
    lines += [f"**Decision rule** (how per-step probabilities become segments): threshold {ru['threshold']:.2f}, "
              f"runs shorter than {ru['min_segment_s']:g} s dropped, runs closer than {ru['merge_gap_s']:g} s joined"
              + ("" if ru.get("keep_threshold") is None else
                 f", then each run widened over the adjacent steps whose probability stays at or above "
                 f"{ru['keep_threshold']:.2f} (hysteresis: the threshold decides where there is a threat, the "
                 "lower level where it starts and ends)") + ". "
              f"Tuned on the validation set only, with the fold twin: the same recipe trained without the "
              f"validation footage, so the rule is picked where the model is as unsure as on new footage "
              f"({dr['objective']}; the twin there: FNR {pct(dv['fnr'])} %, mAP@0.5 "
              f"{pct(dv['map']['0.5'])}, avg mAP {pct(dv['map_avg'])}, alarms on {dv['threat_free_flagged']} of "
              f"its {dv['threat_free_clips']} threat-free clips). The checkpoint's config carries it "
              "(threat_threshold, threat_min_segment_s, threat_merge_gap_s, threat_keep_threshold), so analyses apply it unless told otherwise.", ""]
    lines += [f"**Held-out composed clips**, all {len(draws)} draws pooled (class-agnostic; CUVA tIoU thresholds; "
              "the paper's table layout):", "",
              "| FNR % | F2 % | mAP@0.1 | mAP@0.3 | mAP@0.5 | avg | SB cosine | ROUGE-L | BLEU |",
              "|---|---|---|---|---|---|---|---|---|",
              f"| {pct(h['fnr'])} | {pct(h['f2'])} | {pct(h['map']['0.1'])} | {pct(h['map']['0.3'])} | "
              f"{pct(h['map']['0.5'])} | {pct(h['map_avg'])} | {num(t.get('sb_cosine'), '{:.2f}')} | "
              f"{num(t.get('rouge_l'), '{:.2f}')} | {num(t.get('bleu'), '{:.2f}')} |", "",
              f"{h['n_gt']} GT segments, {h['n_pred']} predicted; frame precision {pct(h['precision'])} %, recall "
              f"{pct(h['recall'])} %. Causes: {t.get('n_pairs', 0)} GT threats, each paired with the cause the analysis "
              "writes for the predicted segment overlapping it most (none = empty text, scoring 0).", "",
              "Held-out events some predicted segment overlaps at tIoU >= 0.5, by kind: "
              + ", ".join(f"{k} {hit}/{n}" for k, (hit, n) in h["hits_at_0.5_by_kind"].items()) + ". "
              f"Threat-free held-out clips (some with pasted harmless walkers) that raise an alarm: "
              f"{h['threat_free_flagged']} of {h['threat_free_clips']}.", "",
              "**Draw by draw** (the same 30 s of footage, other event plans; one draw's events are too few to "
              "judge on, as these rows show):", "",
              "| seed | clips | threat events | FNR % | F2 % | mAP@0.1 | mAP@0.3 | mAP@0.5 | avg | AUC | threat-free "
              "flagged |", "|---|---|---|---|---|---|---|---|---|---|---|",
              *(f"| {d['seed']} | {d['clips']} | {d['threat_events']} | {pct(d['fnr'])} | {pct(d['f2'])} | "
                f"{pct(d['map']['0.1'])} | {pct(d['map']['0.3'])} | {pct(d['map']['0.5'])} | {pct(d['map_avg'])} | "
                f"{d['auc']:.3f} | {d['threat_free_flagged']} of {d['threat_free_clips']} |" for d in draws),
              f"| mean | | | {pct(mean['fnr'])} | {pct(mean['f2'])} | {pct(mean['map']['0.1'])} | "
              f"{pct(mean['map']['0.3'])} | {pct(mean['map']['0.5'])} | {pct(mean['map_avg'])} | {mean['auc']:.3f} | |",
              "",
              *localisation_lines(h.get("localisation")),
              *category_lines(r.get("categories") or {}, t.get("kinds_named")),
              f"Targets of the issue, on the pooled draws: mAP@0.5 >= 60: {met(h['map']['0.5'] >= 0.6)}; FNR <= 20 %: "
              f"{met(not math.isnan(h['fnr']) and h['fnr'] <= 0.2)}; <= 1 false alarm per 10 min on real normal footage: "
              f"{met(nf['per_10_min'] <= 1)}. Draws meeting both held-out targets on their own: "
              f"{sum(d['map']['0.5'] >= 0.6 and d['fnr'] <= 0.2 for d in draws)} of {len(draws)}.", ""]
    rk, pr = r["ranking"], r.get("evidence_probe") or {}

    def aucs(x: dict) -> str:
        return ", ".join(f"{k} {v:.2f}" for k, v in x["by_kind"].items())

    lines += [f"**Ranking quality, before any decision rule**: frame-level ROC AUC of the per-step threat "
              f"probability (the chance that a step inside a threat scores above one outside) is "
              f"{rk['validation']['auc']:.3f} on validation (the fold twin) and {rk['heldout']['auc']:.3f} on "
              f"held-out (by kind, "
              f"held-out: {aucs(rk['heldout'])})."]
    if pr:
        lines += [f"A different learner on the same evidence (`assets/evidence_probe.py`: a gradient-boosted tree "
                  f"on {pr['n_features']} hand-made per-step features: counts, track speeds, ages and still times, "
                  f"optical flow, scene changes, zone dwell, scene-graph predicates, fight probability, occupancy, "
                  f"and their changes over 1-2 s) reaches "
                  f"{pr['train']['auc']:.3f} on its training clips but {pr['val']['auc']:.3f} on validation and "
                  f"{pr['heldout']['auc']:.3f} on held-out (by kind, held-out: {aucs(pr['heldout'])}). Two unlike "
                  "learners stopping at about the same AUC say the evidence the front-ends give, not the model, "
                  "sets the limit here."]
    lines += [""]
    lines += [f"**Real normal footage** (threat-free; {nf['total_s']} s): {nf['n_false_alarms']} false alarm(s) = "
              f"{nf['per_hour']:.1f} per hour ({nf['per_10_min']:.2f} per 10 min), flagging {nf['flagged_s']} s "
              f"({pct(nf['flagged_fraction'])} % of the footage; merged segments make the count alone look better "
              "than it is). This is every threat-free video "
              f"there is here. {', '.join(map(_window, TRAIN_WINDOWS))} is the footage the training clips were "
              "composed on (its people and background were seen in training, without labels of their own); vtest.avi 0-30 s "
              "(the studio's sample, counted once) and bikes.mp4 were never trained on.", "",
              "| video | length s | false alarms (s) | flagged s | max threat prob |", "|---|---|---|---|---|"]
    for vid, v in nf["videos"].items():
        lines.append(f"| {vid} | {v['duration_s']} | {v['false_alarms'] or 'none'} | {v['flagged_s']} | "
                     f"{v['max_prob']:.3f} |")
    if r.get("studio_sample"):
        (v,) = r["studio_sample"]["videos"].values()
        lines += ["", f"The studio's sample (`{STUDIO_SAMPLE.name}`: vtest.avi 0-30 s re-encoded as H.264, not "
                  f"counted above): false alarms (s) {v['false_alarms'] or 'none'}, max threat prob "
                  f"{v['max_prob']:.3f}. The re-encoding changes what the front-ends report, so the same 30 s "
                  "can score differently from vtest.avi's."]
    lines += ["", "**Operating points**: the same model and segment rule at other thresholds "
              "(`python -m uprm analyze --threshold T`; a hysteresis level applies where it lies below T), held-out "
              "composed clips against real normal footage:", "",
              "| threshold | FNR % | F2 % | mAP@0.5 | avg mAP | threat-free clips flagged | false alarms / 10 min "
              "| footage flagged % |", "|---|---|---|---|---|---|---|---|"]
    for o in r["operating_points"]:
        lines.append(f"| {o['threshold']:.2f} | {pct(o['fnr'])} | {pct(o['f2'])} | {pct(o['map_0.5'])} | "
                     f"{pct(o['map_avg'])} | {o['threat_free_flagged']} of {o['threat_free_clips']} | "
                     f"{o['false_alarms_per_10_min']:.1f} | {pct(o['flagged_fraction'])} |")
    lines += ["", "**Ablations** (held-out composed clips; the full row uses the shipped rule, the others re-tune "
              "it on the validation set with the fold twin under the same switch):", "",
              "| row | how | FNR % | F2 % | mAP@0.1 | mAP@0.3 | mAP@0.5 | avg | AUC | R_hpe | R_ore | R_vbe | 1-G |",
              "|---|---|---|---|---|---|---|---|---|---|---|---|---|"]
    for name, a in r["ablations"].items():
        g = a["gates"]
        lines.append(f"| {name} | {a['how']} | {pct(a['fnr'])} | {pct(a['f2'])} | {pct(a['map']['0.1'])} | "
                     f"{pct(a['map']['0.3'])} | {pct(a['map']['0.5'])} | {pct(a['map_avg'])} | {a['auc']:.3f} | {g['R_hpe']:.2f} | "
                     f"{g['R_ore']:.2f} | {g['R_vbe']:.2f} | {g['coarse_share']:.2f} |")
    if r.get("seed_spread"):
        sp, rg = r["seed_spread"], r["seed_spread"]["range"]

        def span(key: str, fmt=pct) -> str:
            return f"{fmt(rg[key][0])}-{fmt(rg[key][1])}"

        lines += ["", f"**Seed spread**: {sp['what']}. Held-out AUC {span('auc', num)}, FNR {span('fnr')} %, "
                  f"mAP@0.5 {span('map_0.5')}, avg mAP {span('map_avg')}, threat-free clips flagged "
                  f"{span('threat_free_flagged', lambda x: f'{x:d}')}; the twins' validation objective "
                  f"{span('validation_objective', num)}. The same recipe moves this far with the seed alone: a "
                  "difference between rows above that is smaller is not evidence."]
    if r.get("seed_spread") and r.get("seed_spread_no_ptr"):
        full, nop = r["seed_spread"]["runs"], r["seed_spread_no_ptr"]["runs"]
        both = [k for k in full if k in nop]
        ahead = {m: sum(full[k][m] > nop[k][m] for k in both) for m in ("auc", "map_0.5")}
        fewer_misses = sum(full[k]["fnr"] < nop[k]["fnr"] for k in both)

        def gates(run: dict) -> str:
            return ", ".join(f"{run[g]:.2f}" for g in ("R_hpe", "R_ore", "coarse_share"))

        lines += ["", "**PTR seed by seed** (the warm-up with and without PTR from the same random start, each "
                  "at its fold twin's rule; held-out, with PTR first): "
                  + "; ".join(f"{k}: AUC {full[k]['auc']:.3f} / {nop[k]['auc']:.3f}, mAP@0.5 {pct(full[k]['map_0.5'])}"
                              f" / {pct(nop[k]['map_0.5'])}, FNR {pct(full[k]['fnr'])} / {pct(nop[k]['fnr'])} %, "
                              f"gates R_hpe, R_ore, 1-G {gates(full[k])} / {gates(nop[k])}" for k in both)
                  + f". With PTR: higher AUC in {ahead['auc']} of {len(both)} seeds, higher mAP@0.5 in "
                  f"{ahead['map_0.5']}, fewer missed frames in {fewer_misses}."]
    if r["alpha_variants"]:
        lines += ["", "**Alpha variants** (`assets/alpha_variants/`: the warm-up recipe from the default's random start, "
                  "only alpha differs; each with the rule its fold twin picked on validation; gate balance on the "
                  "held-out clips):",
                  "", "| variant | alpha | R_hpe | R_ore | R_vbe | 1-G | AUC | mAP@0.5 | FNR % |",
                  "|---|---|---|---|---|---|---|---|---|"]
        for name, v in r["alpha_variants"].items():
            g = v["gates"]
            lines.append(f"| {name} | {v['alpha']:g} | {g['R_hpe']:.3f} | {g['R_ore']:.3f} | {g['R_vbe']:.3f} | "
                         f"{g['coarse_share']:.3f} | {v['auc']:.3f} | {pct(v['map']['0.5'])} | {pct(v['fnr'])} |")
    lines += ["", END]
    section = "\n".join(lines)
    text = CARD.read_text() if CARD.is_file() else f"# UPRM small\n\n## Results\n\n{START}\n{END}\n"
    if START not in text or END not in text:
        raise bs.BootstrapError(f"{CARD} lacks the results markers {START!r} ... {END!r}: put them back under "
                                "'## Evaluation results'")
    head, rest = text.split(START, 1)
    tail = rest.split(END, 1)[1]
    CARD.write_text(head + section + tail)


if __name__ == "__main__":
    sys.exit(main())
