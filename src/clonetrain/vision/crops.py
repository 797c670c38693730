"""Square face crops from smoothed face boxes, and the quality measures taken on them."""

from __future__ import annotations

import cv2
import numpy as np


def crop_box(box: np.ndarray, scale: float) -> np.ndarray:
    """The square (x0, y0, side) around a face box, `scale` times its larger side, centred a little below the
    box centre so the chin stays in the crop (the mouth is what the model learns)."""
    w, h = box[2] - box[0], box[3] - box[1]
    side = max(w, h) * scale
    cx, cy = (box[0] + box[2]) / 2, (box[1] + box[3]) / 2 + 0.05 * h
    return np.array([cx - side / 2, cy - side / 2, side], np.float32)


def cut(rgb: np.ndarray, square: np.ndarray, size: int) -> np.ndarray:
    """Resample the square region into a size x size crop; outside the frame the border is replicated."""
    x0, y0, side = (float(v) for v in square)
    s = size / side
    m = np.array([[s, 0, -x0 * s], [0, s, -y0 * s]], np.float32)
    interp = cv2.INTER_AREA if s < 1 else cv2.INTER_LINEAR
    return cv2.warpAffine(rgb, m, (size, size), flags=interp, borderMode=cv2.BORDER_REPLICATE)


def sharpness(crop: np.ndarray) -> float:
    """Variance of the Laplacian of the grey crop: low on motion blur and out-of-focus frames."""
    grey = cv2.cvtColor(crop, cv2.COLOR_RGB2GRAY)
    return float(cv2.Laplacian(grey, cv2.CV_32F).var())


def profile_ratio(keypoints: np.ndarray) -> float:
    """|nose tip - eye midpoint| along the eye axis / eye distance: about 0 frontal, about 0.5+ in profile."""
    right_eye, left_eye, nose = keypoints[0], keypoints[1], keypoints[2]
    axis = left_eye - right_eye
    dist = float(np.linalg.norm(axis))
    if dist < 1e-3:
        return 1.0
    return abs(float(np.dot(nose - (right_eye + left_eye) / 2, axis / dist))) / dist
