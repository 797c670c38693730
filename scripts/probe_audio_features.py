"""Which audio features carry the mouth across speakers? A ridge probe from features (+-5 video frames of
context) to the mouth opening the landmarks stage measured: fitted on one clone's first 80%, tested on its last
20% and on other clones (each at its best lag within +-3 frames, as real takes are often a few frames off).
It chose audio_features.whisper_layers; rerun it when the encoder or the footage changes.

    python scripts/probe_audio_features.py --root /tmp/probe_data --fit talk_man_60s \
        --test talk_woman_8s talk_de_anchor_20s talk_zh_woman_15s vertical_talk_man_sofa_20s
    (each clone preprocessed first: python -m clonetrain stage=preprocess clone=X paths.root=/tmp/probe_data)

Writes bench/results/audio_features_probe.json.
"""

from __future__ import annotations

import argparse
import subprocess
import sys
from pathlib import Path

import numpy as np
import soundfile as sf

sys.path.insert(0, str(Path(__file__).resolve().parent))
from bench_common import write_result  # noqa: E402

from clonetrain.audio_analysis import whisper  # noqa: E402
from clonetrain.contract import files  # noqa: E402

PROJECT = Path(__file__).resolve().parents[1]
CONTEXT = 5
LAMBDAS = (1e1, 1e2, 1e3, 1e4, 1e5)
SETS = {"mel": ("mel",), "L0": (0,), "L1": (1,), "L2": (2,), "L3": (3,), "L4": (4,), "L5": (5,), "L6": (6,),
        "L2-3": (2, 3), "L1-3": (1, 2, 3), "L2-4": (2, 3, 4), "L3-5": (3, 4, 5)}


def per_video_frame(feats: np.ndarray, per_frame: float, n: int) -> np.ndarray:
    """Mean of the feature frames each video frame owns."""
    out = np.zeros((n, feats.shape[1]), np.float32)
    for j in range(n):
        a = min(int(round(j * per_frame)), len(feats) - 1)
        out[j] = feats[a : max(int(round((j + 1) * per_frame)), a + 1)].mean(0)
    return out


def with_context(x: np.ndarray) -> np.ndarray:
    pad = np.pad(x, ((CONTEXT, CONTEXT), (0, 0)), mode="edge")
    return np.concatenate([pad[k : k + len(x)] for k in range(2 * CONTEXT + 1)], 1)


def best_lag_r(pred: np.ndarray, y: np.ndarray, ok: np.ndarray, lags: int) -> float:
    best = -1.0
    for lag in range(-lags, lags + 1):
        a, b = max(0, -lag), max(0, lag)
        p, t, m = pred[a : len(pred) - b], y[b : len(y) - a], ok[b : len(y) - a]
        best = max(best, float(np.corrcoef(p[m], t[m])[0, 1]))
    return best


def load(root: Path, clone: str) -> dict:
    wav, sr = sf.read(files.of_clone(root, clone, "audio", "audio"), dtype="float32")
    lm = np.load(files.of_clone(root, clone, "landmarks", "landmarks"))
    mouth = lm["mouth_open"]
    n = len(mouth)
    layers = whisper.encode(wav, layers=tuple(range(7)))  # base: the stem and 6 layers
    feats = {"mel": per_video_frame(np.load(files.of_clone(root, clone, "audio", "mel")), 3.2, n)}
    for i in range(7):
        feats[i] = per_video_frame(layers[:, i * 512 : (i + 1) * 512], 2, n)
    return {"feats": feats, "mouth": np.nan_to_num(mouth), "valid": lm["valid"] & np.isfinite(mouth)}


def probe(data: dict, fit: str, tests: list[str], parts: tuple) -> dict:
    def x(clone: str) -> np.ndarray:
        return with_context(np.concatenate([data[clone]["feats"][p] for p in parts], 1))

    X, y, ok = x(fit), data[fit]["mouth"], data[fit]["valid"]
    cut = int(0.8 * len(X))
    train = ok.copy()
    train[cut:] = False
    mu, sd = X[train].mean(0), X[train].std(0) + 1e-6
    A = (X[train] - mu) / sd
    target = y[train] - y[train].mean()
    gram = A @ A.T  # dual ridge: far fewer frames than feature dimensions
    rows = {}
    for lam in LAMBDAS:
        w = A.T @ np.linalg.solve(gram + lam * np.eye(len(gram)), target)
        own = best_lag_r(((X[cut:] - mu) / sd) @ w, y[cut:], ok[cut:], 0)
        others = {c: best_lag_r(((x(c) - mu) / sd) @ w, data[c]["mouth"], data[c]["valid"], 3) for c in tests}
        rows[lam] = {"same_speaker_heldout_r": round(own, 3), "cross_speaker_r": round(float(np.mean(list(
            others.values()))), 3), "per_speaker": {c: round(v, 3) for c, v in others.items()}}
    lam = max(rows, key=lambda k: rows[k]["same_speaker_heldout_r"])  # chosen on the fitted speaker only
    return {"lambda": lam, **rows[lam]}


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--root", type=Path, required=True, help="data root holding the preprocessed clones")
    ap.add_argument("--fit", default="talk_man_60s")
    ap.add_argument("--test", nargs="+", required=True)
    ap.add_argument("--out", type=Path, default=PROJECT / "bench" / "results" / "audio_features_probe.json")
    args = ap.parse_args()
    data = {c: load(args.root, c) for c in [args.fit, *args.test]}
    results = {}
    for name, parts in SETS.items():
        results[name] = probe(data, args.fit, args.test, parts)
        print(name, results[name], flush=True)
    mel = results["mel"]["cross_speaker_r"]
    best = max((k for k in results if k != "mel"), key=lambda k: results[k]["cross_speaker_r"])
    commit = subprocess.run(["git", "-C", str(PROJECT), "rev-parse", "HEAD"], capture_output=True, text=True).stdout.strip()
    write_result(args.out, {
        "what": "ridge probe: audio features (+-5 frames) -> mouth opening, fitted on the first 80% of one clone",
        "commit": commit, "fit": args.fit, "test": args.test, "whisper": "base", "results": results,
        "targets": {
            "whisper_layer2_beats_mel_cross_speaker": {
                "value": round(results["L2"]["cross_speaker_r"] - mel, 3),
                "goal": "> 0: layer 2 (the default) predicts other speakers' mouths better than log-mel",
                "met": bool(results["L2"]["cross_speaker_r"] > mel)},
            "layer2_within_0.02_of_best": {
                "value": round(results[best]["cross_speaker_r"] - results["L2"]["cross_speaker_r"], 3),
                "goal": f"<= 0.02 below the best set ({best})",
                "met": bool(results[best]["cross_speaker_r"] - results["L2"]["cross_speaker_r"] <= 0.02)},
        },
    })
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
