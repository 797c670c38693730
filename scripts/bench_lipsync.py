"""The lip-sync acceptance benchmark; writes bench/results/lipsync.json.

    python scripts/bench_lipsync.py [--train-minutes 15] [--pretrain-minutes 30] [--data /tmp/ct_bench]

1. Preprocess talk_man_60s (the clone under test) and the base corpus: the other speech clips of
   ../shared/footage (talk_may_13s, talk_woman_8s, streamer_fullbody 22 s), never talk_man.
2. Pretrain a base on the corpus (mirrored and recoloured: pretrain.augment), for longer than a clone trains:
   a base is trained once and serves every clone.
3. Fine-tune the clone from the base, and train it from scratch, each for the same time budget; the same again
   for a short budget (--short-minutes), where a base should show most.
4. Evaluate each on the held-out 15% of talk_man (the fine-tuned ones against the static frame and the
   un-tuned base).
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "scripts"))
from bench_common import write_result  # noqa: E402
from demo import CONSENT, DEFAULT_FOOTAGE  # noqa: E402

FOOTAGE = DEFAULT_FOOTAGE.parent
CLONES = {
    "man": {"take.mp4": "talk_man_60s.mp4"},
    "man_scratch": {"take.mp4": "talk_man_60s.mp4"},
    "man_short": {"take.mp4": "talk_man_60s.mp4"},
    "man_short_scratch": {"take.mp4": "talk_man_60s.mp4"},
    "may": {"take.mp4": "talk_may_13s.mp4"},
    "woman": {"take.mp4": "talk_woman_8s.mp4"},
    "streamer": {"take.mp4": "streamer_fullbody_no_audio_22s.mp4", "take.wav": "streamer_fullbody_22s.wav"},
}
CORPUS = ["may", "woman", "streamer"]


def clonetrain(data: Path, clone: str, *overrides: str) -> float:
    t0 = time.perf_counter()
    cmd = [sys.executable, "-m", "clonetrain", f"clone={clone}", f"paths.root={data}", "logger=csv", *overrides]
    print("$", " ".join(cmd[1:]), flush=True)
    subprocess.run(cmd, check=True)
    return time.perf_counter() - t0


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--train-minutes", type=float, default=15.0)
    ap.add_argument("--pretrain-minutes", type=float, default=30.0)
    ap.add_argument("--short-minutes", type=float, default=5.0, help="the short budget (0: skip it)")
    ap.add_argument("--data", type=Path, default=Path("/tmp/clonetrain_bench"))
    ap.add_argument("--out", type=Path, default=ROOT / "bench" / "results" / "lipsync.json")
    args = ap.parse_args()
    data = args.data
    today = dt.date.today()
    for clone, files in CLONES.items():
        raw = data / "raw" / clone
        raw.mkdir(parents=True, exist_ok=True)
        for name, src in files.items():
            if not (raw / name).exists():
                os.symlink(FOOTAGE / src, raw / name)
        (raw / "consent.yaml").write_text(CONSENT.format(name=files["take.mp4"], today=today,
                                                         expires=today + dt.timedelta(days=1)))
    times = {}
    for clone in CLONES:
        # The corpus clips are short; they are still worth learning from.
        times[f"preprocess_{clone}"] = clonetrain(data, clone, "stage=preprocess", "ingest.min_duration_s=5")
    budget = [f"train.max_minutes={args.train_minutes}", "train.max_steps=1000000"]
    times["pretrain"] = clonetrain(data, "base", "stage=pretrain", f"pretrain.corpus=[{','.join(CORPUS)}]",
                                   f"train.max_minutes={args.pretrain_minutes}", "train.max_steps=1000000")
    base = data / "work" / "base" / "pretrain" / "model.safetensors"
    times["train_from_base"] = clonetrain(data, "man", "stage=train", f"model.base={base}", *budget)
    times["train_from_scratch"] = clonetrain(data, "man_scratch", "stage=train", *budget)
    trained = ["man", "man_scratch"]
    if args.short_minutes > 0:
        short = [f"train.max_minutes={args.short_minutes}", "train.max_steps=1000000"]
        times["train_from_base_short"] = clonetrain(data, "man_short", "stage=train", f"model.base={base}", *short)
        times["train_from_scratch_short"] = clonetrain(data, "man_short_scratch", "stage=train", *short)
        trained += ["man_short", "man_short_scratch"]
    for clone in trained:
        times[f"evaluate_{clone}"] = clonetrain(data, clone, "stage=evaluate")

    def read(clone: str, stage: str, name: str) -> dict:
        return json.loads((data / "work" / clone / stage / name).read_text())

    from clonetrain.evaluation.metrics import beats

    tuned, scratch = read("man", "evaluate", "metrics.json"), read("man_scratch", "evaluate", "metrics.json")
    train_m = {c: read(c, "train", "manifest.json")["counts"] for c in trained}
    vs_scratch = beats(tuned["metrics"]["clone"], scratch["metrics"]["clone"])
    commit = subprocess.run(["git", "rev-parse", "HEAD"], cwd=ROOT, capture_output=True, text=True).stdout.strip()
    result = {
        "benchmark": "lipsync",
        "date": dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds"),
        "commit": commit, "clone": "talk_man_60s.mp4", "corpus": CORPUS,
        "budget_minutes": {"pretrain": args.pretrain_minutes, "train": args.train_minutes,
                           "short": args.short_minutes or None},
        "training": {c: {k: train_m[c].get(k) for k in ("steps", "seconds", "stopped_by", "val/l1_lower", "val/sync",
                                                         "val/expert_acc")} for c in train_m},
        "fine_tuned": tuned["metrics"], "from_scratch": scratch["metrics"]["clone"],
        "targets": {**tuned["targets"], "fine_tuned_beats_scratch": all(vs_scratch.values())},
        "fine_tuned_vs_scratch": vs_scratch,
        "comparison": tuned["comparison"],
        "wall_seconds": {k: round(v, 1) for k, v in times.items()},
    }
    if args.short_minutes > 0:
        a, b = (read(c, "evaluate", "metrics.json")["metrics"]["clone"] for c in ("man_short", "man_short_scratch"))
        result["short_budget"] = {"minutes": args.short_minutes, "fine_tuned": a, "from_scratch": b,
                                  "fine_tuned_vs_scratch": beats(a, b), "fine_tuned_beats_scratch": all(beats(a, b).values())}
    write_result(args.out, result)
    return 0


if __name__ == "__main__":
    sys.exit(main())
