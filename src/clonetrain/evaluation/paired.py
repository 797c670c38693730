"""Is one method really better than another on the same held-out frames, or is the gap noise?

A moving-block bootstrap over the frames: neighbouring frames are alike (a mouth stays open for several
frames), so frames are resampled in blocks of about a second, which keeps that dependence. Each resample
recomputes every metric for both methods on the same frames; the spread of the differences is the
uncertainty that the single number hides.
"""

from __future__ import annotations

import numpy as np

from clonetrain.contract.metrics import BY_NAME
from clonetrain.evaluation.metrics import HIGHER_IS_BETTER, FrameSeries, pearson


def block_for(fps: float) -> int:
    """The bootstrap block: one second of frames, about the length of a run of syllables."""
    return max(1, int(round(fps)))


def block_resamples(n: int, block: int, count: int, rng: np.random.Generator) -> np.ndarray:
    """(count, n) frame indices, each row made of randomly placed runs of `block` consecutive frames."""
    block = max(1, min(block, n))
    per_row = -(-n // block)
    starts = rng.integers(0, n - block + 1, size=(count, per_row))
    rows = (starts[..., None] + np.arange(block)).reshape(count, -1)
    return rows[:, :n]


def _stat(name: str, s: FrameSeries, mouth_real: np.ndarray, idx: np.ndarray) -> float:
    """The metric over the frames `idx`, from the per-frame measure it is declared to summarise."""
    metric = BY_NAME[name]
    values = getattr(s, metric.series)[idx]
    if metric.pooled == "corr":
        return pearson(values, mouth_real[idx])
    values = values[np.isfinite(values)]
    return float(values.mean()) if values.size else float("nan")


def paired_bootstrap(a: FrameSeries, b: FrameSeries, mouth_real: np.ndarray, block: int, count: int = 2000,
                     seed: int = 0) -> dict[str, dict]:
    """For each metric, a's advantage over b (positive: a is better, whichever direction the metric runs), its
    95% interval, and the share of resamples in which a is better. `block`: see block_for."""
    n = len(mouth_real)
    rows = block_resamples(n, block, count, np.random.default_rng(seed))
    whole = np.arange(n)
    out = {}
    for name, higher in HIGHER_IS_BETTER.items():
        sign = 1.0 if higher else -1.0
        diffs = np.array([sign * (_stat(name, a, mouth_real, r) - _stat(name, b, mouth_real, r)) for r in rows])
        diffs = diffs[np.isfinite(diffs)]
        point = sign * (_stat(name, a, mouth_real, whole) - _stat(name, b, mouth_real, whole))
        if diffs.size == 0 or not np.isfinite(point):
            out[name] = {"advantage": None, "ci95": None, "p_better": None}
            continue
        lo, hi = np.percentile(diffs, [2.5, 97.5])
        out[name] = {"advantage": round(float(point), 4), "ci95": [round(float(lo), 4), round(float(hi), 4)],
                     "p_better": round(float((diffs > 0).mean()), 3)}
    return out


def cross_speaker_bootstrap(a: dict, b: dict, block: int, count: int = 2000, seed: int = 0) -> dict:
    """Clone a's cross-speaker advantage over clone b: the mean over their common drivers of r(a) - r(b), where
    each resample draws the same frames (blocks, per driver) for both. a, b: contract.series.read_driver_series()."""
    names = sorted(set(a) & set(b))
    if not names:
        return {"advantage": None, "ci95": None, "p_better": None, "drivers": 0}
    rng = np.random.default_rng(seed)
    diffs, points = np.zeros(count), []
    for name in names:
        (ga, real), (gb, _) = a[name], b[name]
        points.append(pearson(ga, real) - pearson(gb, real))
        for i, idx in enumerate(block_resamples(len(real), block, count, rng)):
            diffs[i] += (pearson(ga[idx], real[idx]) - pearson(gb[idx], real[idx])) / len(names)
    diffs = diffs[np.isfinite(diffs)]
    point = float(np.mean(points))
    if not diffs.size or not np.isfinite(point):
        return {"advantage": None, "ci95": None, "p_better": None, "drivers": len(names)}
    lo, hi = np.percentile(diffs, [2.5, 97.5])
    return {"advantage": round(point, 4), "ci95": [round(float(lo), 4), round(float(hi), 4)],
            "p_better": round(float((diffs > 0).mean()), 3), "drivers": len(names)}


def verdict(advantage: dict) -> str:
    """'better' / 'worse' when the 95% interval excludes 0, else 'tie' (the gap is within the noise)."""
    ci = advantage.get("ci95")
    if ci is None:
        return "unknown"
    return "better" if ci[0] > 0 else "worse" if ci[1] < 0 else "tie"
