"""Set up a clone from the one-minute test clip and run the whole pipeline on it.

    python scripts/demo.py                   # clone "demo_man" from ../shared/footage/talk_man_60s.mp4
    python scripts/demo.py --footage other.mp4 --clone demo_x -- stage=preprocess force=true

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

CONSENT = """\
# Test footage from a public repository; the person shown did not consent to a clone.
person: "speaker in {name} (public test clip)"
recorded_by: "public source, see shared/footage/SOURCES.md"
date: {today}
permitted_uses:
  - pipeline_testing
expires: {expires}
"""


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--footage", type=Path, default=DEFAULT_FOOTAGE)
    ap.add_argument("--clone", default="demo_man")
    ap.add_argument("--data", type=Path, default=ROOT / "data")
    ap.add_argument("overrides", nargs="*", help="Hydra overrides passed on, e.g. stage=preprocess")
    args = ap.parse_args()
    if not args.footage.is_file():
        print(f"footage not found: {args.footage} (expected the shared footage folder beside the project)")
        return 2
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
