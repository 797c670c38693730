"""Pick the main speaker among the faces of a take, keep that identity across frames, smooth the boxes.

Detections are linked into tracks by overlap; the main track is the one with the most face (area x score
summed over frames), so a passer-by or a face on a poster never takes over. Boxes are smoothed over time
(centre lightly, size more) and short gaps are bridged by interpolation.
"""

from __future__ import annotations

import numpy as np

from clonetrain.vision.detector import Detection


def iou(a: np.ndarray, b: np.ndarray) -> float:
    x0, y0 = max(a[0], b[0]), max(a[1], b[1])
    x1, y1 = min(a[2], b[2]), min(a[3], b[3])
    inter = max(0.0, x1 - x0) * max(0.0, y1 - y0)
    union = (a[2] - a[0]) * (a[3] - a[1]) + (b[2] - b[0]) * (b[3] - b[1]) - inter
    return float(inter / union) if union > 0 else 0.0


def main_track(frames: list[list[Detection]], min_iou: float = 0.3, max_gap: int = 10) -> list[Detection | None]:
    """One detection (or None) per frame: the main speaker's."""
    tracks: list[dict] = []  # {"last_box", "last_frame", "items": {frame: Detection}, "weight"}
    for t, dets in enumerate(frames):
        free = list(range(len(tracks)))
        for d in sorted(dets, key=lambda d: -d.score):
            best, best_iou = None, min_iou
            for ti in free:
                tr = tracks[ti]
                if t - tr["last_frame"] > max_gap:
                    continue
                o = iou(tr["last_box"], d.box)
                if o > best_iou:
                    best, best_iou = ti, o
            if best is None:
                tracks.append({"last_box": d.box, "last_frame": t, "items": {t: d}, "weight": 0.0})
                best = len(tracks) - 1
            else:
                free.remove(best)
            tr = tracks[best]
            tr["last_box"], tr["last_frame"] = d.box, t
            tr["items"][t] = d
            tr["weight"] += float((d.box[2] - d.box[0]) * (d.box[3] - d.box[1]) * d.score)
    if not tracks:
        return [None] * len(frames)
    best = max(tracks, key=lambda tr: tr["weight"])
    return [best["items"].get(t) for t in range(len(frames))]


def _moving_average(x: np.ndarray, window: int) -> np.ndarray:
    if window <= 1 or len(x) < 2:
        return x
    pad = window // 2
    padded = np.pad(x, [(pad, pad)] + [(0, 0)] * (x.ndim - 1), mode="edge")
    kernel = np.ones(window) / window
    return np.stack([np.convolve(padded[:, i], kernel, mode="valid") for i in range(x.shape[1])], 1)[: len(x)]


def smooth_boxes(boxes: np.ndarray, valid: np.ndarray, window: int, max_gap: int) -> tuple[np.ndarray, np.ndarray]:
    """Smooth (n, 4) xyxy boxes over valid frames; bridge gaps up to max_gap frames.

    Returns (boxes, has_box). Frames in longer gaps keep NaN and has_box False. Each run of frames with a box
    is smoothed on its own, so a face never slides across a long gap."""
    n = len(boxes)
    out = np.full((n, 4), np.nan, np.float32)
    has = valid.copy()
    idx = np.flatnonzero(valid)
    if idx.size == 0:
        return out, has
    # Bridge short gaps by linear interpolation of the raw boxes.
    filled = boxes.astype(np.float64).copy()
    gaps = np.diff(idx)
    for i in np.flatnonzero((gaps > 1) & (gaps <= max_gap + 1)):
        a, b = idx[i], idx[i + 1]
        for t in range(a + 1, b):
            w = (t - a) / (b - a)
            filled[t] = (1 - w) * boxes[a] + w * boxes[b]
            has[t] = True
    # Smooth centre and size separately on each contiguous run.
    runs = np.split(np.flatnonzero(has), np.flatnonzero(np.diff(np.flatnonzero(has)) > 1) + 1)
    for run in runs:
        b = filled[run]
        centre = np.stack([(b[:, 0] + b[:, 2]) / 2, (b[:, 1] + b[:, 3]) / 2], 1)
        size = np.stack([b[:, 2] - b[:, 0], b[:, 3] - b[:, 1]], 1)
        centre = _moving_average(centre, window)
        size = _moving_average(size, window * 3)
        out[run] = np.concatenate([centre - size / 2, centre + size / 2], 1)
    return out, has
