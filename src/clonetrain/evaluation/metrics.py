"""Metrics of generated faces against the real held-out frames.

The judge is the landmark backend of the preprocessing (MediaPipe mesh by default), run the same way on real and
generated frames (both upscaled from the training size to 256 px), so neither side is favoured.
"""

from __future__ import annotations

import cv2
import numpy as np
from skimage.metrics import peak_signal_noise_ratio, structural_similarity

from clonetrain.audio_analysis import sync
from clonetrain.contract import metrics as declared
from clonetrain.contract.series import FrameSeries
from clonetrain.vision import geometry
from clonetrain.vision.landmarks import Landmarker

MOUTH = slice(48, 68)
JUDGE_SIZE = 256


def judge_landmarks(landmarker: Landmarker, faces: np.ndarray, runs: list[np.ndarray]) -> np.ndarray:
    """(n, S, S, 3) -> (n, 68, 2) at JUDGE_SIZE; the tracker is reset at the start of every run of frames."""
    out = np.full((len(faces), 68, 2), np.nan, np.float32)
    for run in runs:
        landmarker.reset()
        big = np.stack([cv2.resize(np.asarray(faces[i]), (JUDGE_SIZE, JUDGE_SIZE), interpolation=cv2.INTER_CUBIC)
                        for i in run])
        out[run] = landmarker(big)
    return out


def mouth_lmd_per_frame(gen: np.ndarray, real: np.ndarray) -> np.ndarray:
    """(n,) mean distance of the 20 mouth points, in eye distances of the real face; NaN where either is missing."""
    d = np.linalg.norm(gen[:, MOUTH] - real[:, MOUTH], axis=-1).mean(-1)
    with np.errstate(invalid="ignore", divide="ignore"):
        return (d / geometry.face_scale(real)).astype(np.float64)


def pearson(a: np.ndarray, b: np.ndarray) -> float:
    ok = np.isfinite(a) & np.isfinite(b)
    if ok.sum() < 3 or a[ok].std() < 1e-9 or b[ok].std() < 1e-9:
        return float("nan")
    return float(np.corrcoef(a[ok], b[ok])[0, 1])


def lower_face_quality(gen: np.ndarray, real: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(n,) PSNR (dB) and (n,) SSIM of the lower half of each frame."""
    h = gen.shape[1] // 2
    psnr, ssim = [], []
    for g, r in zip(gen, real):
        g, r = g[h:], r[h:]
        # Identical halves (the real footage judged against itself) have no error: PSNR is inf, not a warning.
        with np.errstate(divide="ignore"):
            psnr.append(peak_signal_noise_ratio(r, g, data_range=255))
        ssim.append(structural_similarity(r, g, channel_axis=-1, data_range=255))
    return np.asarray(psnr, np.float64), np.asarray(ssim, np.float64)


def judge(landmarker: Landmarker, gen: np.ndarray, real: np.ndarray, real_pts: np.ndarray,
          runs: list[np.ndarray]) -> FrameSeries:
    pts = judge_landmarks(landmarker, gen, runs)
    psnr, ssim = lower_face_quality(gen, real)
    return FrameSeries(geometry.mouth_opening(pts).astype(np.float64), mouth_lmd_per_frame(pts, real_pts), psnr, ssim)


def summarise(series: FrameSeries, mouth_real: np.ndarray, energy: np.ndarray, mouth_lead: float,
              max_lag: int) -> dict:
    valid = np.isfinite(series.mouth_open)
    est = sync.estimate_offset(series.mouth_open, energy, valid, max_lag)
    margin = est.margin()
    lmd = series.lmd[np.isfinite(series.lmd)]
    # Identical images have an infinite PSNR, which JSON cannot hold: report None.
    psnr = float(np.mean(series.psnr))
    return {
        "lmd_mouth": round(float(lmd.mean()), 4) if lmd.size else float("nan"),
        "mouth_open_corr": round(pearson(series.mouth_open, mouth_real), 4),
        "offset_frames": round(float(est.frames - mouth_lead), 2) if np.isfinite(est.frames) else None,
        "sync_peak_corr": round(est.peak, 4) if np.isfinite(est.peak) else None,
        "sync_peak_margin": round(margin, 4) if np.isfinite(margin) else None,
        "psnr_lower": round(psnr, 3) if np.isfinite(psnr) else None,
        "ssim_lower": round(float(np.mean(series.ssim)), 4),
        "judged_frames": int(valid.sum()),
    }


# Direction of "better" for each per-frame metric: what beats and the paired bootstrap compare (contract.metrics
# declares them).
HIGHER_IS_BETTER = declared.PER_FRAME


def beats(a: dict, b: dict) -> dict[str, bool]:
    """Does `a` beat `b` on each metric (offset: |a| <= |b|, or a within +-1 frame)?"""
    out = {}
    for k, higher in HIGHER_IS_BETTER.items():
        if a.get(k) is None or b.get(k) is None or not np.isfinite(a[k]) or not np.isfinite(b[k]):
            out[k] = False
        else:
            out[k] = a[k] > b[k] if higher else a[k] < b[k]
    for m in declared.HELDOUT:
        if m.higher_is_better is None and m.gated:  # the offset: within its goal, or no further from 0
            out[m.name] = m.holds_against(a.get(m.name), b.get(m.name))
    return out
