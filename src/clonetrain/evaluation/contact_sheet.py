"""A contact sheet of mouths: one row per chosen frame, columns real | clone | static, each the mouth region
enlarged, so blur, a missing lip line or a mouth that stays shut can be seen at a glance. The clone and static
columns are generated, and the sheet says so."""

from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np

from clonetrain.media.label import LABEL

TILE = (176, 112)  # width, height of one enlarged mouth
LABEL_W = 190
HEAD_H = 28
COLUMNS = ("real", "clone (AI)", "static (AI)")


def mouth_tile(face: np.ndarray, box: np.ndarray) -> np.ndarray:
    """The mouth box (x0, y0, x1, y1), grown to the tile's aspect and enlarged to TILE."""
    x0, y0, x1, y1 = (float(v) for v in box)
    s = face.shape[0]
    cx, cy, w = (x0 + x1) / 2, (y0 + y1) / 2, max(x1 - x0, (y1 - y0) * TILE[0] / TILE[1]) * 1.15
    h = w * TILE[1] / TILE[0]
    m = np.array([[TILE[0] / w, 0, -(cx - w / 2) * TILE[0] / w], [0, TILE[1] / h, -(cy - h / 2) * TILE[1] / h]],
                 np.float32)
    return cv2.warpAffine(np.ascontiguousarray(face[:s, :s]), m, TILE, flags=cv2.INTER_CUBIC,
                          borderMode=cv2.BORDER_REPLICATE)


def _text(img: np.ndarray, text: str, x: int, y: int, scale: float = 0.42) -> None:
    cv2.putText(img, text, (x, y), cv2.FONT_HERSHEY_SIMPLEX, scale, (20, 20, 20), 1, cv2.LINE_AA)


Row = tuple[str, list[tuple[np.ndarray, np.ndarray]]]


def render(rows: list[Row]) -> np.ndarray:
    """rows: (label, [(face (S, S, 3), its mouth box x0, y0, x1, y1) for real, clone, static]) -> RGB sheet.
    A label may hold up to three lines separated by '|'."""
    h = HEAD_H + len(rows) * (TILE[1] + 4) + 22
    sheet = np.full((h, LABEL_W + len(COLUMNS) * (TILE[0] + 4), 3), 255, np.uint8)
    for j, name in enumerate(COLUMNS):
        _text(sheet, name, LABEL_W + j * (TILE[0] + 4) + 4, 19, 0.5)
    for i, (label, tiles) in enumerate(rows):
        y = HEAD_H + i * (TILE[1] + 4)
        for k, line in enumerate(label.split("|")[:3]):
            _text(sheet, line.strip(), 4, y + 22 + 18 * k)
        for j, (face, box) in enumerate(tiles):
            x = LABEL_W + j * (TILE[0] + 4)
            sheet[y : y + TILE[1], x : x + TILE[0]] = mouth_tile(np.asarray(face), box)
    _text(sheet, f"{LABEL}: the clone and static columns are generated", 4, h - 7)
    return sheet


def write(path: Path, rows: list[Row]) -> Path:
    """The sheet as a PNG (inside a stage's build folder, which is swapped into place whole)."""
    if not cv2.imwrite(str(path), cv2.cvtColor(render(rows), cv2.COLOR_RGB2BGR)):
        raise OSError(f"could not write {path}")
    return path
