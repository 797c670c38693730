"""What the 68 points say: head pose, mouth opening, temporal smoothing."""

from __future__ import annotations

import cv2
import numpy as np
from scipy.signal import savgol_filter

# A generic head (millimetres, nose tip at the origin) for the six points that pin the pose down:
# nose tip 30, chin 8, right eye outer corner 36, left eye outer corner 45, mouth corners 48 and 54.
_POSE_POINTS = [30, 8, 36, 45, 48, 54]
_HEAD_3D = np.array([[0.0, 0.0, 0.0], [0.0, -63.6, -12.5], [-43.3, 32.7, -26.0], [43.3, 32.7, -26.0],
                     [-28.9, -28.9, -24.1], [28.9, -28.9, -24.1]], np.float64)


def head_pose(points: np.ndarray, image_size: float) -> np.ndarray:
    """(n, 68, 2) -> (n, 3) yaw, pitch, roll in degrees (NaN where points are NaN). Positive yaw: the head
    turns to the image right."""
    out = np.full((len(points), 3), np.nan, np.float32)
    f = float(image_size)
    cam = np.array([[f, 0, f / 2], [0, f, f / 2], [0, 0, 1]], np.float64)
    for i, p in enumerate(points):
        if np.isnan(p).any():
            continue
        img = p[_POSE_POINTS].astype(np.float64)
        ok, rvec, _ = cv2.solvePnP(_HEAD_3D * [1, -1, -1], img, cam, None, flags=cv2.SOLVEPNP_ITERATIVE)
        if not ok:
            continue
        rot, _ = cv2.Rodrigues(rvec)
        # Euler angles (x: pitch, y: yaw, z: roll) from the rotation matrix.
        sy = np.hypot(rot[0, 0], rot[1, 0])
        pitch = np.degrees(np.arctan2(rot[2, 1], rot[2, 2]))
        yaw = np.degrees(np.arctan2(-rot[2, 0], sy))
        roll = np.degrees(np.arctan2(rot[1, 0], rot[0, 0]))
        pitch = (pitch + 180) % 360 - 180
        out[i] = [yaw, (pitch - 180) % 360 - 180 if abs(pitch) > 90 else pitch, roll]
    return out


def face_scale(points: np.ndarray) -> np.ndarray:
    """Distance between the outer eye corners: the unit in which mouth measures are comparable across faces."""
    return np.linalg.norm(points[..., 45, :] - points[..., 36, :], axis=-1)


def mouth_opening(points: np.ndarray) -> np.ndarray:
    """Mean gap between the inner lips (61-67, 62-66, 63-65) over the eye distance: ~0 closed, ~0.3 wide open."""
    gap = np.linalg.norm(points[..., [61, 62, 63], :] - points[..., [67, 66, 65], :], axis=-1).mean(-1)
    return gap / face_scale(points)


def smooth_series(x: np.ndarray, valid: np.ndarray, window: int, order: int = 2) -> np.ndarray:
    """Savitzky-Golay along time on each run of valid frames (keeps peaks, unlike a moving average)."""
    out = x.astype(np.float32).copy()
    if window < 3:
        return out
    window += 1 - window % 2
    idx = np.flatnonzero(valid)
    if idx.size == 0:
        return out
    for run in np.split(idx, np.flatnonzero(np.diff(idx) > 1) + 1):
        if len(run) >= window:
            out[run] = savgol_filter(x[run], window, min(order, window - 1), axis=0)
    return out
