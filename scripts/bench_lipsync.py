"""The lip-sync acceptance benchmark; writes bench/results/lipsync.json.

    python scripts/bench_lipsync.py [--train-minutes 15] [--short-minutes 5] [--pretrain-minutes 30] [--seeds 3]
                                    [--encoder whisper|mel] [--data /tmp/ct_bench]
    python scripts/bench_lipsync.py --base PATH/model.safetensors   (reuse a base instead of pretraining one)
    python scripts/bench_lipsync.py --base B --trained DIR          (evaluate clones trained elsewhere, see below)
    python scripts/bench_lipsync.py --base B --data D --reevaluate  (today's evaluation of the clones trained in D)
    python scripts/bench_lipsync.py --baseline [--train-minutes 15]  (today's model from scratch, no base:
                                                            bench/results/lipsync_baseline_mel.json)

1. Preprocess talk_man_60s (the clone under test) and talk_de_anchor_20s (the short-footage clone).
2. The base: every clip of ../shared/corpus (72 people, none of them in ../shared/footage) becomes a clone of its
   own, is preprocessed and kept when its sound follows its mouth (`python -m clonetrain corpus`: the project's
   offset estimate, a clear peak; the report says what was dropped and why), then a base is pretrained on the
   kept clips for --pretrain-minutes. A base is trained once and serves every clone.
3. Fine-tune the clone from the base, and train it from scratch, each for the same budget: --train-minutes
   and the short budget (--short-minutes, where a base should show most). With --seeds N each pair is trained N
   times (train.seed 1234, 1235, ...). The short-footage clone (20 s of a new person) is fine-tuned from the base.
4. Evaluate each on its held-out 15% and with other people's real speech (evaluate.drivers, cross-speaker).
   Fine-tuned vs scratch is judged on the mean over seeds and, per seed, by a paired block bootstrap: over the
   held-out frames for the held-out metrics, over the drivers' frames for cross-speaker r
   (evaluation.paired.cross_speaker_bootstrap). `targets` holds issue 13's acceptance targets as
   {name: {"value", "goal", "met"}}, each judged on the mean over the main budget's seeds (`per_seed` beside it).

--trained DIR: the clones were trained elsewhere (a GPU machine) with the same recipe; DIR holds one
<clone>.safetensors per clone (man, man_scratch, man_short, ..., de_short) and jobs.jsonl (one line per clone:
steps, seconds, device). Each is adopted as the clone's model (stage=train train.max_steps=0) and evaluated here.
Budgets are then steps, not minutes: what this 2-core CPU reaches in that time on a quiet machine.

--reevaluate: the clones in --data were trained by an earlier run of this benchmark; only the evaluation runs
again (an evaluation-side change, such as the mouth texture, re-measured on the same models). Their training
numbers are read from their train manifests; `reevaluated` records it.

--baseline trains only the from-scratch arm (clone man_scratch) once and evaluates it: the numbers of the model
as it is, before issue 13 changes it. `--note` records the conditions (e.g. a CPU shared with other jobs).

Every run is a pipeline stage: a killed benchmark, run again, redoes only what is missing.
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import math
import os
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "scripts"))
from bench_common import write_result, commit as commit_of  # noqa: E402
import demo  # noqa: E402
from demo import CONSENT, DEFAULT_FOOTAGE  # noqa: E402

FOOTAGE = DEFAULT_FOOTAGE.parent
CLONE_FILES = {"take.mp4": "talk_man_60s.mp4"}
SHORT_FOOTAGE = "de_short"
SHORT_FILES = {"take.mp4": "talk_de_anchor_20s.mp4"}
FIRST_SEED = 1234


def clonetrain(data: Path, clone: str, *overrides: str) -> float:
    t0 = time.perf_counter()
    cmd = [sys.executable, "-m", "clonetrain", f"clone={clone}", f"paths.root={data}", "logger=csv", *overrides]
    print("$", " ".join(cmd[1:]), flush=True)
    subprocess.run(cmd, check=True)
    return time.perf_counter() - t0


def add_clone(data: Path, clone: str, files: dict[str, str]) -> None:
    raw = data / "raw" / clone
    raw.mkdir(parents=True, exist_ok=True)
    for name, src in files.items():
        if not (raw / name).exists():
            os.symlink(FOOTAGE / src, raw / name)
    today = dt.date.today()
    record = raw / "consent.yaml"
    from clonetrain.product.consent import require_live
    from clonetrain.core.errors import ClonetrainError

    try:  # a record still in force is kept: rewriting it would make ingest, and all after it, run again
        require_live(data, clone, use="train")
        return
    except ClonetrainError:
        pass
    record.write_text(CONSENT.format(name=files["take.mp4"], today=today, expires=today + dt.timedelta(days=7)))


def pair_names(budget: str, i: int, suffix: str = "") -> tuple[str, str]:
    """Clone ids of the fine-tuned and the scratch arm; the first seed keeps the names of earlier runs. `suffix`
    names the fine-tuned clones of another base (scratch arms do not depend on the base: they are shared)."""
    name = "man" + ("_short" if budget == "short" else "") + (f"_seed{i}" if i else "")
    return name + suffix, f"{name}_scratch"


def build_base(data: Path, encoder: str, minutes: float, times: dict) -> Path:
    """The corpus (each clip a clone, kept when in sync) and a base pretrained on it: the demo's studio base."""
    from clonetrain.core.workspace import Workspace
    from clonetrain.stages.train import STUDIO_BASE, studio_base

    t0 = time.perf_counter()
    if demo.build_base(data, minutes, [f"audio_features.encoder={encoder}"]):
        raise SystemExit("building the base failed (see above)")
    times["corpus_and_pretrain"] = time.perf_counter() - t0
    return studio_base(Workspace(data, STUDIO_BASE))


def trained_elsewhere(trained: Path) -> dict[str, dict]:
    """jobs.jsonl of a training run on another machine: {clone: its line}."""
    rows = [json.loads(line) for line in (trained / "jobs.jsonl").read_text().splitlines() if line.strip()]
    return {r["job"]: r for r in rows}


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--train-minutes", type=float, default=15.0)
    ap.add_argument("--pretrain-minutes", type=float, default=30.0)
    ap.add_argument("--short-minutes", type=float, default=5.0, help="the short budget (0: skip it)")
    ap.add_argument("--seeds", type=int, default=1, help="train each fine-tuned/scratch pair this many times")
    ap.add_argument("--train-seeds", type=int, help="seeds at the main budget (default: --seeds)")
    ap.add_argument("--encoder", default="whisper", choices=("whisper", "mel"), help="audio_features.encoder")
    ap.add_argument("--base", type=Path, help="a base checkpoint to fine-tune from instead of pretraining one")
    ap.add_argument("--trained", type=Path, action="append",
                    help="clones trained elsewhere: <clone>.safetensors and jobs.jsonl (repeatable: the first folder "
                         "holding a clone's file is used)")
    ap.add_argument("--reevaluate", action="store_true",
                    help="only evaluate again the clones an earlier run trained in --data (needs --base)")
    ap.add_argument("--suffix", default="", help="suffix of the fine-tuned clones' names (another base's arms)")
    ap.add_argument("--data", type=Path, default=Path("/tmp/clonetrain_bench"))
    ap.add_argument("--baseline", action="store_true",
                    help="train only from scratch (no base, one seed, no short budget) and evaluate it")
    ap.add_argument("--steps-per-minute", type=float,
                    help="train each arm for this many steps per budget minute instead of by the clock (203: what "
                         "this 2-core CPU makes alone, 1014 steps in 5 min), so that other work on the machine "
                         "cannot shorten the training")
    ap.add_argument("--hearing", default="render", choices=("render", "live"),
                    help="evaluate.hearing: judge the clones on render's model input or a live session's")
    ap.add_argument("--note", default="", help="conditions worth recording, e.g. 'CPU shared with 4 other jobs'")
    ap.add_argument("--out", type=Path)
    args = ap.parse_args()
    if args.baseline:
        return baseline(args)
    if (args.trained or args.reevaluate) and not args.base:
        ap.error("--trained and --reevaluate need --base: the base those clones were fine-tuned from")
    args.out = args.out or ROOT / "bench" / "results" / ("lipsync.json" if args.hearing == "render" else "lipsync_live.json")
    data, enc, hear = args.data, f"audio_features.encoder={args.encoder}", f"evaluate.hearing={args.hearing}"
    budgets = {"train": args.train_minutes, **({"short": args.short_minutes} if args.short_minutes > 0 else {})}
    seeds = {"train": args.train_seeds or args.seeds, "short": args.seeds}
    pairs = {b: [pair_names(b, i, args.suffix) for i in range(seeds[b])] for b in budgets}
    short_clone = SHORT_FOOTAGE + args.suffix
    clones = [c for b in pairs.values() for pair in b for c in pair]
    jobs = {k: v for d in reversed(args.trained or []) for k, v in trained_elsewhere(d).items()}
    times = {}
    for clone in clones:
        add_clone(data, clone, CLONE_FILES)
    add_clone(data, short_clone, SHORT_FILES)
    for clone in [*clones, short_clone]:
        if not args.reevaluate:
            times[f"preprocess_{clone}"] = clonetrain(data, clone, "stage=preprocess", enc)
    base = args.base.resolve() if args.base else build_base(data, args.encoder, args.pretrain_minutes, times)

    def train(clone: str, minutes: float, seed: int, from_base: bool) -> None:
        if args.reevaluate:
            times[f"evaluate_{clone}"] = clonetrain(data, clone, "stage=evaluate", enc, hear)
            return
        if args.trained:  # adopt the model trained elsewhere, then evaluate it here
            found = [d.resolve() / f"{clone}.safetensors" for d in args.trained
                     if (d / f"{clone}.safetensors").is_file()]
            if not found:
                raise SystemExit(f"no {clone}.safetensors in {[str(d) for d in args.trained]}")
            run = [f"model.base={found[0]}", "train.max_steps=0",
                   "train.preview_seconds=0"]
        elif args.steps_per_minute:  # the steps this CPU makes alone in the budget, whatever else runs beside
            run = [f"model.base={base if from_base else ''}", f"train.max_steps={round(minutes * args.steps_per_minute)}",
                   f"train.max_minutes={minutes * 10}", f"train.seed={seed}"]
        else:
            run = [f"model.base={base if from_base else ''}", f"train.max_minutes={minutes}",
                   "train.max_steps=1000000", f"train.seed={seed}"]
        times[f"train_{clone}"] = clonetrain(data, clone, "stage=train", enc, *run)
        times[f"evaluate_{clone}"] = clonetrain(data, clone, "stage=evaluate", enc, hear)

    # Seed by seed, so that an interrupted benchmark has whole pairs behind it.
    for i in range(max(seeds.values())):
        for budget, minutes in budgets.items():
            if i >= len(pairs[budget]):
                continue
            tuned, scratch = pairs[budget][i]
            train(tuned, minutes, FIRST_SEED + i, from_base=True)
            train(scratch, minutes, FIRST_SEED + i, from_base=False)
    train(short_clone, args.train_minutes, FIRST_SEED, from_base=True)

    from clonetrain.contract import files
    from clonetrain.core.manifest import sha256_file
    from clonetrain.core.workspace import Workspace
    from clonetrain.evaluation import versus

    def read(clone: str, stage: str, name: str) -> dict:
        """A finished stage's JSON file by its contract name, or its manifest."""
        if name == "manifest":
            return Workspace(data, clone).read_manifest(stage)
        return json.loads(files.of_clone(data, clone, stage, name).read_text())

    def compare(budget: str) -> dict:
        """Fine-tuned (a) vs scratch (b), seed by seed and over the seeds."""
        runs = [versus.clone_vs_clone(files.stage_folder(data, tuned, "evaluate"),
                                      files.stage_folder(data, scratch, "evaluate"))
                for tuned, scratch in pairs[budget]]
        per_seed = [{"seed": FIRST_SEED + i, "clones": list(pair), "fine_tuned": r["a"], "from_scratch": r["b"],
                     "fine_tuned_vs_scratch": r["a_beats_b"], "advantage_of_fine_tuned": r["advantage_of_a"]}
                    for i, (pair, r) in enumerate(zip(pairs[budget], runs))]
        mean = versus.over_seeds(runs)
        return {"minutes": budgets[budget], "seeds": per_seed,
                "mean_over_seeds": {"fine_tuned": mean["a"], "from_scratch": mean["b"],
                                    "fine_tuned_vs_scratch": mean["a_beats_b"]},
                # Per metric: in how many seeds fine-tuned was surely better, surely worse, or within the noise.
                "bootstrap_verdicts": mean["verdicts"],
                "fine_tuned_beats_scratch": all(mean["a_beats_b"].values())}

    def training(clone: str) -> dict:
        counts = read(clone, "train", "manifest")["counts"]
        if clone in jobs:  # trained elsewhere: its own numbers
            j = jobs[clone]
            return {"steps": j["steps"], "seconds": j["seconds"], "stopped_by": j["stopped_by"],
                    "device": j.get("device"), "precision": j.get("precision"),
                    **{k: j["metrics"].get(k) for k in ("val/l1_lower", "val/sync", "val/expert_acc")}}
        return {k: counts.get(k) for k in ("steps", "seconds", "stopped_by", "val/l1_lower", "val/sync",
                                           "val/expert_acc")}

    tuned0 = read(pairs["train"][0][0], "evaluate", "metrics")
    main_budget = compare("train")
    short_footage = read(short_clone, "evaluate", "metrics")
    commit = commit_of()
    corpus = files.of_clone(data, "base", "corpus", "report")
    result = {
        "benchmark": "lipsync",
        "date": dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds"),
        "commit": commit, "clone": CLONE_FILES["take.mp4"], "audio_encoder": args.encoder, "hearing": args.hearing,
        "corpus": ({k: v for k, v in json.loads(corpus.read_text()).items() if k != "rows"}
                   if corpus.is_file() else None),
        "base": {"path": str(base), "sha256": sha256_file(base), "pretrained_here": not args.base,
                 **({"training": jobs["base"]} if "base" in jobs else {})},
        "budget_minutes": {"pretrain": None if args.base else args.pretrain_minutes, "train": args.train_minutes,
                           "short": args.short_minutes or None},
        "trained_elsewhere": bool(args.trained),
        "reevaluated": args.reevaluate,
        "steps_per_minute": args.steps_per_minute,
        "seeds": seeds,
        "training": {c: training(c) for c in [*clones, short_clone]},
        # The first seed's fine-tuned clone against the static frame.
        "fine_tuned": tuned0["metrics"], "uncertainty": tuned0["uncertainty"], "comparison": tuned0["comparison"],
        "heldout_targets": {**tuned0["targets"], "fine_tuned_beats_scratch": main_budget["fine_tuned_beats_scratch"]},
        "cross_speaker": cross_speaker(tuned0),
        # Each clone's held-out mouth with and without the mouth texture, and its settings.
        "mouth_texture": {c: read(c, "evaluate", "metrics").get("mouth_texture")
                          for c in [*clones, short_clone]},
        "fine_tuned_vs_scratch": main_budget,
        "short_footage": {"clone": short_clone, "footage": SHORT_FILES["take.mp4"],
                          "metrics": short_footage["metrics"]["clone"], "cross_speaker": cross_speaker(short_footage)},
        "wall_seconds": {k: round(v, 1) for k, v in times.items()},
        "note": args.note or None,
    }
    short = None
    if "short" in budgets:
        result["short_budget"] = short = compare("short")
    result["targets"] = targets([read(tuned, "evaluate", "metrics") for tuned, _ in pairs["train"]], short,
                                short_footage)
    write_result(args.out, result)
    return 0


def cross_speaker(metrics: dict) -> dict:
    """The evaluation's cross-speaker section: per driver its offset, the clone's and the static frame's r, LMD
    and silence, and the mean over drivers."""
    xs = metrics.get("cross_speaker") or {}
    return {"drivers": xs.get("drivers", []), "mean": xs.get("mean", {}), "closed_mouth": xs.get("closed_mouth"),
            "skipped": xs.get("skipped", []), "warnings": xs.get("warnings", [])}


def mean_over_seeds(evaluations: list[dict]) -> dict:
    """Each method's metrics (metrics.json "metrics") averaged over the seeds' evaluations
    (evaluation.versus.mean_metrics: the offset as the mean distance from 0)."""
    from clonetrain.evaluation.versus import mean_metrics

    out = {}
    for method in ("clone", "static_frame"):
        rows = [e["metrics"].get(method, {}) for e in evaluations]
        # Only the metrics every seed has a finite number for (a NaN in one seed would make the mean NaN).
        numbers = [k for k in (rows[0] if rows else {}) if all(
            isinstance(r.get(k), (int, float)) and not isinstance(r.get(k), bool) and math.isfinite(r[k]) for r in rows)]
        out[method] = mean_metrics(rows, numbers)
    return out


def targets(evaluations: list[dict], short: dict | None, short_footage: dict | None) -> dict:
    """Issue 13's acceptance targets {name: {value, goal, met}}; value None where this run did not measure it.
    evaluations: the metrics.json of the main budget's fine-tuned clone, one per seed: each target is judged on
    the mean over them (`per_seed` beside it), so that one lucky seed does not meet a goal the others miss.
    short: compare("short"); short_footage: the short-footage clone's metrics.json."""
    from clonetrain.contract.metrics import goal_values

    out = {k: dict(v) for k, v in goal_values(mean_over_seeds(evaluations))[1].items()}
    for name, target in out.items():
        if isinstance(target["value"], float):
            target["value"] = round(target["value"], 4)
        if len(evaluations) > 1:
            target["per_seed"] = [e["target_values"].get(name, {}).get("value") for e in evaluations]
    value, met = None, False
    if short:
        boots = [s["advantage_of_fine_tuned"].get("cross_speaker_mouth_r", {}) for s in short["seeds"]]
        advantages = [b.get("advantage") for b in boots if b.get("advantage") is not None]
        if advantages:
            value = round(sum(advantages) / len(advantages), 4)
            verdicts = [b.get("verdict") for b in boots]
            # Better on the mean, surely better (95% interval above 0) in at least half the seeds, never surely worse.
            met = value > 0 and verdicts.count("better") * 2 >= len(verdicts) and "worse" not in verdicts
    out["finetune_beats_scratch_5min"] = {
        "value": value, "met": bool(met),
        "goal": "> 0: cross-speaker r of the fine-tuned clone minus from-scratch at the short budget, mean over "
                "seeds, by the paired bootstrap over the drivers' frames: surely better in at least half the seeds "
                "and surely worse in none"}
    r = (short_footage or {}).get("metrics", {}).get("clone", {}).get("cross_speaker_mouth_r")
    out["short_footage_cross_speaker_r"] = {
        "value": r, "met": bool(r is not None and r >= 0.4),
        "goal": ">= 0.4: a clone of talk_de_anchor_20s alone, fine-tuned from the base, driven by the other takes"}
    return out


def baseline(args) -> int:
    """Today's model, from scratch, no base: train once, evaluate (held-out and cross-speaker), write the result."""
    from clonetrain.contract import files
    from clonetrain.core.workspace import Workspace

    data, clone = args.data, pair_names("train", 0)[1]
    out = args.out or ROOT / "bench" / "results" / "lipsync_baseline_mel.json"
    add_clone(data, clone, CLONE_FILES)
    mel = "audio_features.encoder=mel"  # the baseline's encoder, the default before Whisper
    times = {"preprocess": clonetrain(data, clone, "stage=preprocess", mel)}
    run = ["model.base=", f"train.max_minutes={args.train_minutes}", "train.max_steps=1000000",
           f"train.seed={FIRST_SEED}"]
    times["train"] = clonetrain(data, clone, "stage=train", mel, *run)
    times["evaluate"] = clonetrain(data, clone, "stage=evaluate", mel)

    def read(stage: str, name: str) -> dict:
        """A finished stage's JSON file by its contract name, or its manifest."""
        if name == "manifest":
            return Workspace(data, clone).read_manifest(stage)
        return json.loads(files.of_clone(data, clone, stage, name).read_text())

    metrics, train = read("evaluate", "metrics"), read("train", "manifest")
    commit = commit_of()
    result = {
        "benchmark": "lipsync", "run": "baseline: today's model (log-mel, model=small), from scratch, no base",
        "date": dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds"), "commit": commit,
        "clone": CLONE_FILES["take.mp4"], "seeds": [FIRST_SEED],
        # The encoder the model heard (audio_features.encoder once Whisper features exist; log-mel before).
        "audio_encoder": read("audio", "manifest")["config"].get("audio_features.encoder", "mel"),
        "budget_minutes": {"train": args.train_minutes},
        "training": {k: train["counts"].get(k) for k in ("steps", "seconds", "stopped_by", "val/l1_lower",
                                                          "val/sync", "val/expert_acc")},
        "metrics": metrics["metrics"], "uncertainty": metrics["uncertainty"],
        "heldout_targets": metrics["targets"], "targets": targets(metrics, None, None),
        "cross_speaker": cross_speaker(metrics),
        "evaluate_seconds": read("evaluate", "manifest")["seconds"],
        "wall_seconds": {k: round(v, 1) for k, v in times.items()},
        "note": args.note or None,
    }
    write_result(out, result)
    return 0


if __name__ == "__main__":
    sys.exit(main())
