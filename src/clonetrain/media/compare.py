"""Side-by-side comparison clips (real | generated ...), each column captioned, over their sound: what a person
looks at to judge a clone. Used by stage=train (a short held-out preview) and stage=evaluate (the whole held-out
part). The "AI-generated" label goes on the generated columns only: the real footage is not AI-generated."""

from __future__ import annotations

import json
from pathlib import Path

import cv2
import numpy as np

from clonetrain.media.label import burn_label
from clonetrain.media.write import write_video


def caption(img: np.ndarray, text: str) -> np.ndarray:
    """The column's caption along its bottom edge, white on a dark band (readable on any face)."""
    out = np.ascontiguousarray(img).copy()
    h, w = out.shape[:2]
    scale = max(0.35, w / 480)
    thick = max(1, int(round(scale * 1.5)))
    (tw, th), base = cv2.getTextSize(text, cv2.FONT_HERSHEY_SIMPLEX, scale, thick)
    band = th + base + 8
    out[h - band :] = (out[h - band :] * 0.35).astype(out.dtype)
    cv2.putText(out, text, ((w - tw) // 2, h - base - 4), cv2.FONT_HERSHEY_SIMPLEX, scale, (255, 255, 255), thick,
                cv2.LINE_AA)
    return out


def write_comparison(columns: list[np.ndarray], fps: int, audio: Path, out: Path, captions: list[str],
                     generated: list[bool], clone: str) -> Path:
    """columns: equally long (n, S, S, 3) uint8 face sequences, shown left to right at twice their size, each
    with its caption; the columns marked generated carry the AI-generated label."""
    if not len(columns) == len(captions) == len(generated):
        raise ValueError("one caption and one generated flag per column")
    s2 = columns[0].shape[1] * 2

    def frames():
        for row in zip(*columns):
            tiles = []
            for x, text, fake in zip(row, captions, generated):
                tile = caption(cv2.resize(x, (s2, s2), interpolation=cv2.INTER_CUBIC), text)
                tiles.append(burn_label(tile) if fake else tile)
            yield np.concatenate(tiles, 1)

    content = " | ".join(f"{c} (AI-generated)" if g else c for c, g in zip(captions, generated))
    write_video(frames(), (len(columns) * s2, s2), fps, out, audio=audio,
                metadata={"comment": json.dumps({"clone": clone, "content": content, "generator": "clonetrain"})})
    return out
