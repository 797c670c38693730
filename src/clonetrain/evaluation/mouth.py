"""Does the generated mouth look real? Measured in the mouth box of held-out frames, generated against real.

The mouth box is the box around the real frame's 20 mouth points (the judge's), widened by a share of its size
on each side, so every method is measured on the same pixels.

  mouth_sharpness_ratio  energy of the Laplacian (mean square) in the box, summed over frames, generated over
                         real: 1.0 is as sharp as the real mouth; a blurred slit is well below
  psnr_mouth, ssim_mouth PSNR (dB) and SSIM of the box
  mouth_flicker_ratio    mean absolute change of the box from one frame to the next, generated over real: 1.0
                         moves as much as the real mouth; well above, it jumps (a mouth taken from a new source
                         frame); near 0, it is still
"""

from __future__ import annotations

import cv2
import numpy as np
from skimage.metrics import peak_signal_noise_ratio, structural_similarity

from clonetrain.evaluation.metrics import JUDGE_SIZE, MOUTH

MIN_SIDE = 8  # SSIM's 7x7 window must fit


def mouth_boxes(real_pts: np.ndarray, size: int, widen: float = 0.3) -> np.ndarray:
    """(n, 68, 2) judge points (at JUDGE_SIZE) -> (n, 4) integer boxes x0, y0, x1, y1 in `size` px. Frames
    where the judge found no face get the median box."""
    mouth = real_pts[:, MOUTH] * (size / JUDGE_SIZE)
    lo, hi = np.nanmin(mouth, 1), np.nanmax(mouth, 1)
    pad = (hi - lo) * widen
    box = np.concatenate([lo - pad, hi + pad], 1)
    ok = np.isfinite(box).all(1)
    if not ok.any():
        box[:] = [size * 0.3, size * 0.6, size * 0.7, size * 0.9]  # where the mouth sits in our crops
    else:
        box[~ok] = np.median(box[ok], 0)
    box = np.round(box).astype(int)
    box[:, 2:] = np.maximum(box[:, 2:], box[:, :2] + MIN_SIDE)
    box[:, :2] = np.clip(box[:, :2], 0, size - MIN_SIDE)
    box[:, 2:] = np.clip(box[:, 2:], box[:, :2] + MIN_SIDE, size)
    return box


def laplacian_energy(rgb: np.ndarray) -> float:
    grey = cv2.cvtColor(np.ascontiguousarray(rgb), cv2.COLOR_RGB2GRAY).astype(np.float32)
    return float(np.mean(cv2.Laplacian(grey, cv2.CV_32F) ** 2))


def quality(gen: np.ndarray, real: np.ndarray, boxes: np.ndarray) -> dict:
    """Sharpness ratio, PSNR and SSIM of the mouth box of each frame (gen, real: (n, S, S, 3) uint8)."""
    e_gen = e_real = 0.0
    psnr, ssim = [], []
    for g, r, (x0, y0, x1, y1) in zip(gen, real, boxes):
        g, r = np.asarray(g)[y0:y1, x0:x1], np.asarray(r)[y0:y1, x0:x1]
        e_gen += laplacian_energy(g)
        e_real += laplacian_energy(r)
        psnr.append(peak_signal_noise_ratio(r, g, data_range=255) if not np.array_equal(r, g) else np.inf)
        ssim.append(structural_similarity(r, g, channel_axis=-1, data_range=255))
    p = float(np.mean(psnr)) if psnr else float("nan")
    return {"mouth_sharpness_ratio": round(e_gen / e_real, 4) if e_real > 0 else None,
            "psnr_mouth": round(p, 3) if np.isfinite(p) else None,  # identical boxes: infinite, not JSON
            "ssim_mouth": round(float(np.mean(ssim)), 4) if ssim else None}


def flicker(gen: np.ndarray, real: np.ndarray, boxes: np.ndarray, runs: list[np.ndarray]) -> dict:
    """Frame-to-frame change of the mouth box within runs of consecutive frames, generated over real (each pair
    measured in the later frame's box, the same pixels on both sides)."""
    moved_gen = moved_real = 0.0
    for run in runs:
        for a, b in zip(run[:-1], run[1:]):
            x0, y0, x1, y1 = boxes[b]
            moved_gen += _change(gen[a], gen[b], x0, y0, x1, y1)
            moved_real += _change(real[a], real[b], x0, y0, x1, y1)
    return {"mouth_flicker_ratio": round(moved_gen / moved_real, 4) if moved_real > 0 else None}


def _change(a: np.ndarray, b: np.ndarray, x0: int, y0: int, x1: int, y1: int) -> float:
    return float(np.mean(np.abs(np.asarray(a)[y0:y1, x0:x1].astype(np.float32)
                                - np.asarray(b)[y0:y1, x0:x1].astype(np.float32))))
