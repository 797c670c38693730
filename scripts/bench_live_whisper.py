"""Can Whisper features run live? The live session hears speech as it arrives, so it cannot cut the sound on the
training grid of 30 s windows (each frame's features there depend on up to 30 s of sound after it). This measures
a live form: every `--step` seconds, the Whisper base encoder (up to the clone's layer) runs on a short window
of the last `context` seconds plus `lookahead` seconds, its position embeddings from 0, minus the encoding of a
silent window of the same length; the frames of the newest step are kept.

Against the grid's features of the same sound: the mean cosine per frame, and what a ridge probe from features
(+-5 video frames) to the mouth opening the landmarks stage measured loses, fitted on the grid's features of the
clip's first 80% and read from the live features of its last 20% (the model would be trained on the grid and
driven live). And the encoder's seconds per step on this CPU.

    python scripts/bench_live_whisper.py [--root DATA --clone NAME]   (default: talk_man_60s preprocessed here)

Writes bench/results/live_whisper.json.
"""

from __future__ import annotations

import argparse
import datetime as dt
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "scripts"))
from bench_common import write_result, commit as commit_of  # noqa: E402
from probe_audio_features import per_video_frame, with_context  # noqa: E402

from clonetrain.contract import files  # noqa: E402

VARIANTS = {"context 3.5 s, lookahead 0.5 s": (3.5, 0.5, False), "context 1.5 s, lookahead 0.5 s": (1.5, 0.5, False),
            "context 3.5 s, lookahead 0.2 s": (3.5, 0.2, False),
            "context 3.5 s, lookahead 0.5 s, padded to 30 s": (3.5, 0.5, True)}
CHOSEN = "context 3.5 s, lookahead 0.5 s"


def preprocess(data: Path, clone: str) -> None:
    import datetime

    raw = data / "raw" / clone
    raw.mkdir(parents=True, exist_ok=True)
    (raw / "talk_man_60s.mp4").symlink_to(ROOT.parent / "shared" / "footage" / "talk_man_60s.mp4")
    (raw / "consent.yaml").write_text(
        "person: test speaker\nrecorded_by: public test clip\ndate: 2026-01-01\npermitted_uses: [pipeline_testing]\n"
        f"expires: {datetime.date.today() + datetime.timedelta(days=30)}\n")
    subprocess.run([sys.executable, "-m", "clonetrain", "stage=preprocess", f"clone={clone}", f"paths.root={data}",
                    "audio_features.encoder=whisper", "logger=none"], cwd=ROOT, check=True)


class LiveEncoder:
    """Whisper features of short windows, as a live session computes them (whisper.encode_recent; padded to 30 s:
    whisper.encode of the short window, as render would encode it)."""

    def __init__(self, layer: int, context_s: float, lookahead_s: float, pad30: bool):
        from clonetrain.audio_analysis import whisper

        self.whisper, self.layer, self.pad30 = whisper, layer, pad30
        self.context, self.lookahead = int(context_s * 16000), int(lookahead_s * 16000)

    def _encode(self, x: np.ndarray) -> np.ndarray:
        encode = self.whisper.encode if self.pad30 else self.whisper.encode_recent
        return encode(x, layers=(self.layer,))

    def features(self, wav: np.ndarray, n_out: int, step_s: float) -> tuple[np.ndarray, float]:
        """(n_out, d) features, frame j centred on sample 320 j, and the mean seconds per step."""
        spf = self.whisper.SAMPLES_PER_FEATURE
        step = int(step_s * 16000)
        out = None
        seconds, steps = 0.0, 0
        for end in range(step, len(wav) + 2 * step, step):  # the frames in [end - step, end)
            a = end - self.context
            x = np.zeros(self.context + self.lookahead, np.float32)
            lo, hi = max(a, 0), min(end + self.lookahead, len(wav))
            if hi > lo:
                x[lo - a : hi - a] = wav[lo:hi]
            t0 = time.perf_counter()
            f = self._encode(x)
            seconds, steps = seconds + time.perf_counter() - t0, steps + 1
            out = np.zeros((n_out, f.shape[1]), np.float32) if out is None else out
            for j in range(max(0, (end - step) // spf), min(n_out, -(-end // spf))):
                out[j] = f[min((j * spf - a) // spf, len(f) - 1)]
        return out, seconds / steps


def probe_r(train: np.ndarray, tests: dict[str, np.ndarray], opening: np.ndarray, ok: np.ndarray) -> dict:
    """A ridge fitted on `train` over the first 80% of frames; its r on the last 20%, read from each of `tests`."""
    cut = int(len(opening) * 0.8)
    tr, te = np.flatnonzero(ok[:cut]), np.flatnonzero(ok[cut:]) + cut
    x = with_context(train)
    mu, sd = x[tr].mean(0), x[tr].std(0) + 1e-6
    a = (x[tr] - mu) / sd
    w = a.T @ np.linalg.solve(a @ a.T + 1e3 * np.eye(len(a)), opening[tr] - opening[tr].mean())
    return {name: round(float(np.corrcoef(((with_context(f)[te] - mu) / sd) @ w, opening[te])[0, 1]), 4)
            for name, f in tests.items()}


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--root", type=Path, help="a data root holding the clone, preprocessed with encoder=whisper")
    ap.add_argument("--clone", default="man")
    ap.add_argument("--step", type=float, default=0.5, help="seconds of speech per live encoding")
    ap.add_argument("--out", type=Path, default=ROOT / "bench" / "results" / "live_whisper.json")
    args = ap.parse_args()
    import json

    import soundfile as sf
    import torch

    torch.set_num_threads(2)
    with tempfile.TemporaryDirectory(prefix="bench-live-whisper-") as tmp:
        data = args.root or Path(tmp)
        if args.root is None:
            preprocess(data, args.clone)
        def stage_file(stage: str, name: str) -> Path:
            return files.of_clone(data, args.clone, stage, name)

        spec = json.loads(stage_file("audio", "features").read_text())["spec"]
        if spec["encoder"] != "whisper" or spec["layers"] != [2]:
            raise SystemExit(f"{args.clone} was preprocessed with {spec['encoder']} {spec.get('layers')}: "
                             "use encoder=whisper")
        wav, _ = sf.read(stage_file("audio", "audio"), dtype="float32")
        grid = np.load(stage_file("audio", "whisper")).astype(np.float32)
        marks = np.load(stage_file("landmarks", "landmarks"))
        opening, ok = marks["mouth_open"].astype(np.float64), marks["valid"] & np.isfinite(marks["mouth_open"])
    n = len(opening)
    per_frame = spec["per_second"] / 25.0
    results = {}
    for name, (context, lookahead, pad30) in VARIANTS.items():
        live, seconds = LiveEncoder(2, context, lookahead, pad30).features(wav, len(grid), args.step)
        cosine = np.sum(live * grid, 1) / (np.linalg.norm(live, axis=1) * np.linalg.norm(grid, axis=1) + 1e-8)
        r = probe_r(per_video_frame(grid, per_frame, n),
                    {"grid": per_video_frame(grid, per_frame, n), "live": per_video_frame(live, per_frame, n)},
                    opening, ok)
        results[name] = {"mean_cosine_to_grid": round(float(cosine.mean()), 4), "probe_r": r,
                         "live_over_grid": round(r["live"] / r["grid"], 4), "seconds_per_step": round(seconds, 4)}
        print(name, results[name], flush=True)
    chosen = results[CHOSEN]
    commit = commit_of()
    write_result(args.out, {
        "benchmark": "live_whisper", "commit": commit,
        "created": dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds"),
        "clone": "talk_man_60s.mp4" if args.root is None else f"{args.root}/{args.clone}",
        "layer": 2, "step_s": args.step, "variants": results, "chosen": CHOSEN,
        "note": ("a feasibility measure for issue 13's default encoder: the live session does not compute these "
                 "features yet (it refuses a Whisper clone); the generator's own response to them is not measured"),
        "targets": {
            "live_probe_r_over_grid": {"value": chosen["live_over_grid"], "goal": ">= 0.95",
                                       "met": chosen["live_over_grid"] >= 0.95},
            "encoder_seconds_per_step": {"value": chosen["seconds_per_step"], "goal": f"<= {0.2 * args.step:.2f} "
                                         "(a fifth of real time on this CPU)",
                                         "met": chosen["seconds_per_step"] <= 0.2 * args.step}},
    })
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
