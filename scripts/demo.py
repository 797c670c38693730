"""Set up a clone from the one-minute test clip and run the whole pipeline on it.

    python scripts/demo.py                   # clone "demo_man" from ../shared/footage/talk_man_60s.mp4
    python scripts/demo.py --base            # first the studio's base from ../shared/corpus (once: 97 clips preprocessed, then --base-minutes of pretraining)
    python scripts/demo.py --footage other.mp4 --clone demo_x -- stage=preprocess force=true

Without a base the clone trains from scratch. With one (built here by --base, or earlier: model.base=auto finds
data/work/base/pretrain/model.safetensors) it is fine-tuned from it: other people's speech moves its mouth more
faithfully (bench/results/lipsync.json: cross-speaker r 0.51 against 0.42 from scratch).

The clip's person did not consent to being cloned: the consent record written here allows pipeline testing only.
"""

from __future__ import annotations

import argparse
import datetime as dt
import shutil
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
DEFAULT_FOOTAGE = ROOT.parent / "shared" / "footage" / "talk_man_60s.mp4"
CORPUS = ROOT.parent / "shared" / "corpus"
SHARED_WITH_BASE = ("audio_features.", "model=", "model.", "ingest.", "faces.", "landmarks")

CONSENT = """\
# Test footage from a public repository; the person shown did not consent to a clone.
person: "speaker in {name} (public test clip)"
recorded_by: "public source, see shared/footage/SOURCES.md"
date: {today}
permitted_uses:
  - pipeline_testing
expires: {expires}
"""

CORPUS_CONSENT = """\
# Public clips gathered for pretraining only (see shared/corpus/SOURCES.md); nobody shown consented to a clone.
person: "the people of the shared pretraining corpus (public clips)"
recorded_by: "public sources, see shared/corpus/SOURCES.md"
date: {today}
permitted_uses:
  - research
expires: {expires}
"""


def build_base(data: Path, minutes: float, overrides: list[str]) -> int:
    """The studio's base from the shared corpus: each clip kept when its sound follows its mouth, then pretrained
    (with the demo's overrides of what a base shares with its clones: what it hears and how faces are cut)."""
    from clonetrain.stages.train import STUDIO_BASE, studio_base
    from clonetrain.core.workspace import Workspace

    built = studio_base(Workspace(data, STUDIO_BASE))
    if built.is_file():
        print(f"the studio base is already built: {built}")
        return 0
    if not CORPUS.is_dir():
        print(f"corpus not found: {CORPUS} (expected the shared corpus folder beside the project)")
        return 2
    consent = data / "raw" / "corpus_consent.yaml"
    consent.parent.mkdir(parents=True, exist_ok=True)
    today = dt.date.today()
    consent.write_text(CORPUS_CONSENT.format(today=today, expires=today + dt.timedelta(days=365)))
    return subprocess.call([sys.executable, "-m", "clonetrain", "corpus", str(CORPUS), "--base", STUDIO_BASE,
                            "--consent", str(consent), "--root", str(data), "--pretrain",
                            f"train.max_minutes={minutes}", "train.max_steps=1000000", "train.batch_size=16",
                            "train.val_every=500", *[o for o in overrides if o.startswith(SHARED_WITH_BASE)]])


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--footage", type=Path, default=DEFAULT_FOOTAGE)
    ap.add_argument("--clone", default="demo_man")
    ap.add_argument("--data", type=Path, default=ROOT / "data")
    ap.add_argument("--base", action="store_true", help="build the studio's base from ../shared/corpus first")
    ap.add_argument("--base-minutes", type=float, default=20.0, help="the base's pretraining budget")
    ap.add_argument("overrides", nargs="*", help="Hydra overrides passed on, e.g. stage=preprocess")
    args = ap.parse_args()
    if not args.footage.is_file():
        print(f"footage not found: {args.footage} (expected the shared footage folder beside the project)")
        return 2
    if args.base and (code := build_base(args.data, args.base_minutes, args.overrides)):
        return code
    raw = args.data / "raw" / args.clone
    raw.mkdir(parents=True, exist_ok=True)
    take = raw / args.footage.name
    if not take.exists():
        shutil.copy2(args.footage, take)
    consent = raw / "consent.yaml"
    if not consent.exists():
        today = dt.date.today()
        consent.write_text(CONSENT.format(name=args.footage.name, today=today, expires=today + dt.timedelta(days=365)))
    cmd = [sys.executable, "-m", "clonetrain", f"clone={args.clone}", f"paths.root={args.data}"]
    if not any(o.startswith("stage=") for o in args.overrides):
        cmd.append("stage=all")
    return subprocess.call(cmd + args.overrides)


if __name__ == "__main__":
    sys.exit(main())
