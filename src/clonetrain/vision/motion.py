"""Cut the footage into labelled motion segments (idle, talking, nodding) for a runtime's motion library."""

from __future__ import annotations

import numpy as np


def label_windows(speech: np.ndarray, pitch: np.ndarray, yaw: np.ndarray, usable: np.ndarray, take: np.ndarray,
                  fps: int, nod_degrees: float = 6.0) -> list[dict]:
    """Label each one-second window, then merge equal neighbours within a take into segments.

    nodding: the head pitches through nod_degrees or more while turning less; talking: speech in half the
    window or more; idle: the rest. Windows without a usable face throughout are left out."""
    n = len(speech)
    labels = []
    for s in range(0, n - fps + 1, fps):
        w = slice(s, s + fps)
        if not usable[w].all() or take[s] != take[s + fps - 1]:
            labels.append(None)
            continue
        p, y = pitch[w], yaw[w]
        if np.ptp(p) >= nod_degrees and np.ptp(p) > 1.5 * np.ptp(y):
            labels.append("nodding")
        elif speech[w].mean() >= 0.5:
            labels.append("talking")
        else:
            labels.append("idle")
    segments: list[dict] = []
    for i, label in enumerate(labels):
        start = i * fps
        if label is None:
            continue
        last = segments[-1] if segments else None
        if last and last["label"] == label and last["end"] == start and take[last["start"]] == take[start]:
            last["end"] = start + fps
        else:
            segments.append({"label": label, "start": start, "end": start + fps})
    for seg in segments:
        seg["seconds"] = (seg["end"] - seg["start"]) / fps
    return segments
