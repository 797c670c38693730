"""Side-by-side comparison clips (real | generated ...), labelled, over their sound: what a person looks at to
judge a clone. Used by stage=train (a short held-out preview) and stage=evaluate (the whole held-out part)."""

from __future__ import annotations

import json
from pathlib import Path

import cv2
import numpy as np

from clonetrain.media.label import burn_label
from clonetrain.media.write import write_video


def write_comparison(columns: list[np.ndarray], fps: int, audio: Path, out: Path, content: str, clone: str) -> Path:
    """columns: equally long (n, S, S, 3) uint8 face sequences, shown left to right at twice their size."""
    s2 = columns[0].shape[1] * 2

    def frames():
        for row in zip(*columns):
            img = np.concatenate([cv2.resize(x, (s2, s2), interpolation=cv2.INTER_CUBIC) for x in row], 1)
            yield burn_label(img)

    write_video(frames(), (len(columns) * s2, s2), fps, out, audio=audio,
                metadata={"comment": json.dumps({"clone": clone, "content": content, "generator": "clonetrain"})})
    return out
