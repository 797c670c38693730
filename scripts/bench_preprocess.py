"""Time the preprocessing of the one-minute clip, cold and warm; write bench/results/preprocess.json.

    python scripts/bench_preprocess.py [--footage PATH] [--out bench/results/preprocess.json]

Cold: every stage runs (force=true) in a fresh process. Warm: the same command again, every stage cached.
Both are timed as a user sees them (the whole `python -m clonetrain` process). Target on a 2-core CPU:
real-time factor (cold seconds / footage seconds) <= 0.5, warm under 2 s.
"""

from __future__ import annotations

import argparse
import datetime as dt
import os
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "scripts"))
from bench_common import commit, write_result  # noqa: E402
from demo import CONSENT, DEFAULT_FOOTAGE  # noqa: E402  (shared consent text for test footage)

from clonetrain.core.workspace import Workspace  # noqa: E402


def run(data: Path, clone: str, *extra: str) -> float:
    t0 = time.perf_counter()
    subprocess.run([sys.executable, "-m", "clonetrain", "stage=preprocess", f"clone={clone}", f"paths.root={data}",
                    "hydra/job_logging=disabled", "hydra/hydra_logging=disabled", *extra],
                   check=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    return time.perf_counter() - t0


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--footage", type=Path, default=DEFAULT_FOOTAGE)
    ap.add_argument("--out", type=Path, default=ROOT / "bench" / "results" / "preprocess.json")
    args = ap.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        data, clone = Path(tmp), "bench"
        raw = data / "raw" / clone
        raw.mkdir(parents=True)
        os.symlink(args.footage.resolve(), raw / args.footage.name)
        today = dt.date.today()
        (raw / "consent.yaml").write_text(CONSENT.format(name=args.footage.name, today=today,
                                                         expires=today + dt.timedelta(days=1)))
        cold = run(data, clone, "force=true")
        peak_mib = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1024
        warm = min(run(data, clone) for _ in range(3))
        manifests = {s: Workspace(data, clone).read_manifest(s)
                     for s in ("ingest", "transcribe", "faces", "landmarks", "audio", "report")}
    footage_s = manifests["ingest"]["counts"]["usable_s"]
    result = {
        "benchmark": "preprocess",
        "footage": args.footage.name,
        "footage_seconds": footage_s,
        "date": dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds"),
        "cold_seconds": round(cold, 2),
        "stage_seconds": {s: m["seconds"] for s, m in manifests.items()},
        "real_time_factor": round(cold / footage_s, 3),
        "warm_seconds": round(warm, 2),
        "peak_memory_mib": round(peak_mib),
        "commit": commit(),
        "audio_encoder": manifests["audio"]["config"].get("audio_features.encoder", "mel"),
        "targets": {
            "real_time_factor": {"value": round(cold / footage_s, 3), "goal": "<= 0.5 (cold preprocess over footage)",
                                 "met": cold / footage_s <= 0.5},
            "warm_seconds": {"value": round(warm, 2), "goal": "< 2 s (a rerun with nothing changed)", "met": warm < 2.0},
        },
    }
    write_result(args.out, result)
    return 0


if __name__ == "__main__":
    sys.exit(main())
