"""Paste a generated face crop back into its full frame through a soft mask over the lower face."""

from __future__ import annotations

from functools import lru_cache

import cv2
import numpy as np


@lru_cache(maxsize=8)
def lower_face_mask(size: int) -> np.ndarray:
    """(size, size, 1) float32: 1 over the lower half of the crop, fading out over ~1/8 of it at the edges,
    so the seam between generated and real pixels is invisible."""
    m = np.zeros((size, size), np.float32)
    edge = max(2, size // 16)
    m[size // 2 : size - edge, edge : size - edge] = 1.0
    k = (size // 8) | 1
    return cv2.GaussianBlur(m, (k, k), 0)[..., None]


def paste(frame: np.ndarray, face: np.ndarray, square: np.ndarray) -> np.ndarray:
    """Blend `face` (S, S, 3), generated for the crop `square` = (x0, y0, side) of `frame`, back into it."""
    out = frame.copy()
    x0, y0, side = (int(round(float(v))) for v in square)
    if side <= 0:
        return out
    face_big = cv2.resize(face, (side, side), interpolation=cv2.INTER_CUBIC).astype(np.float32)
    mask = cv2.resize(lower_face_mask(face.shape[0])[..., 0], (side, side))[..., None]
    h, w = frame.shape[:2]
    fx0, fy0, fx1, fy1 = max(x0, 0), max(y0, 0), min(x0 + side, w), min(y0 + side, h)
    if fx1 <= fx0 or fy1 <= fy0:
        return out
    sub = (slice(fy0 - y0, fy1 - y0), slice(fx0 - x0, fx1 - x0))
    region = out[fy0:fy1, fx0:fx1].astype(np.float32)
    blended = region * (1 - mask[sub]) + face_big[sub] * mask[sub]
    out[fy0:fy1, fx0:fx1] = np.clip(blended + 0.5, 0, 255).astype(np.uint8)
    return out
