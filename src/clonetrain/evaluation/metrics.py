"""Metrics of generated faces against the real held-out frames.

The judge is the landmark backend of the preprocessing (MediaPipe mesh by default), run the same way on real and
generated frames (both upscaled from the training size to 256 px), so neither side is favoured.
"""

from __future__ import annotations

import cv2
import numpy as np
from skimage.metrics import peak_signal_noise_ratio, structural_similarity

from clonetrain.audio import sync
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


def mouth_lmd(gen: np.ndarray, real: np.ndarray) -> float:
    """Mean distance of the 20 mouth points, in eye distances of the real face."""
    ok = ~(np.isnan(gen).any((1, 2)) | np.isnan(real).any((1, 2)))
    if not ok.any():
        return float("nan")
    d = np.linalg.norm(gen[ok, MOUTH] - real[ok, MOUTH], axis=-1).mean(-1)
    return float((d / geometry.face_scale(real[ok])).mean())


def pearson(a: np.ndarray, b: np.ndarray) -> float:
    ok = np.isfinite(a) & np.isfinite(b)
    if ok.sum() < 3 or a[ok].std() < 1e-9 or b[ok].std() < 1e-9:
        return float("nan")
    return float(np.corrcoef(a[ok], b[ok])[0, 1])


def lower_face_quality(gen: np.ndarray, real: np.ndarray) -> tuple[float, float]:
    """PSNR (dB) and SSIM of the lower half, averaged over frames."""
    h = gen.shape[1] // 2
    psnr, ssim = [], []
    for g, r in zip(gen, real):
        g, r = g[h:], r[h:]
        psnr.append(peak_signal_noise_ratio(r, g, data_range=255))
        ssim.append(structural_similarity(r, g, channel_axis=-1, data_range=255))
    # Identical images have an infinite PSNR, which JSON cannot hold: report None.
    p = float(np.mean(psnr))
    return (p if np.isfinite(p) else None), float(np.mean(ssim))


def all_metrics(landmarker: Landmarker, gen: np.ndarray, real: np.ndarray, real_pts: np.ndarray,
                energy: np.ndarray, runs: list[np.ndarray], mouth_lead: float, max_lag: int) -> dict:
    pts = judge_landmarks(landmarker, gen, runs)
    mouth_gen, mouth_real = geometry.mouth_opening(pts), geometry.mouth_opening(real_pts)
    valid = np.isfinite(mouth_gen)
    est = sync.estimate_offset(mouth_gen, energy, valid, max_lag)
    psnr, ssim = lower_face_quality(gen, real)
    return {
        "lmd_mouth": round(mouth_lmd(pts, real_pts), 4),
        "mouth_open_corr": round(pearson(mouth_gen, mouth_real), 4),
        "offset_frames": round(float(est.frames - mouth_lead), 2) if np.isfinite(est.frames) else None,
        "sync_peak_corr": round(est.peak, 4) if np.isfinite(est.peak) else None,
        "psnr_lower": round(psnr, 3) if psnr is not None else None,
        "ssim_lower": round(ssim, 4),
        "judged_frames": int(valid.sum()),
    }


# Direction of "better" for each metric; offset is better when closer to 0.
HIGHER_IS_BETTER = {"mouth_open_corr": True, "psnr_lower": True, "ssim_lower": True, "lmd_mouth": False}


def beats(a: dict, b: dict) -> dict[str, bool]:
    """Does `a` beat `b` on each metric (offset: |a| <= |b|, or a within +-1 frame)?"""
    out = {}
    for k, higher in HIGHER_IS_BETTER.items():
        if a.get(k) is None or b.get(k) is None or not np.isfinite(a[k]) or not np.isfinite(b[k]):
            out[k] = False
        else:
            out[k] = a[k] > b[k] if higher else a[k] < b[k]
    ao, bo = a.get("offset_frames"), b.get("offset_frames")
    out["offset_frames"] = ao is not None and (abs(ao) <= 1 or (bo is None or abs(ao) <= abs(bo)))
    return out
