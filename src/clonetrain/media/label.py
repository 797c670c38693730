"""The visible "AI-generated" label every rendered frame carries. Not configurable, by design."""

from __future__ import annotations

import cv2
import numpy as np

LABEL = "AI-generated"


def burn_label(rgb: np.ndarray) -> np.ndarray:
    """Draw the label in the top-left corner, sized to the frame, white on a dark box (readable on any
    background). Returns a new array."""
    img = np.ascontiguousarray(rgb).copy()
    h, w = img.shape[:2]
    scale = max(0.4, min(h, w) / 480)
    thick = max(1, int(round(scale * 2)))
    (tw, th), base = cv2.getTextSize(LABEL, cv2.FONT_HERSHEY_SIMPLEX, scale, thick)
    pad = max(3, int(4 * scale))
    cv2.rectangle(img, (0, 0), (tw + 2 * pad, th + base + 2 * pad), (0, 0, 0), -1)
    cv2.putText(img, LABEL, (pad, pad + th), cv2.FONT_HERSHEY_SIMPLEX, scale, (255, 255, 255), thick, cv2.LINE_AA)
    return img
