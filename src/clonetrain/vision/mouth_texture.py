"""Mouth texture from the person's own frames.

The generator averages away a mouth's fine detail (lip lines, the edge of the teeth, skin pores) and, driven by
another voice, opens the mouth less than the sound asks. The person's own training frames have both: real detail
and every opening. For each generated face a source frame is chosen from a bank of them, and two things are taken
from it:

- its whole mouth (`shape`): the source is placed on the face by an optical flow smoothed over `align_sigma`, so
  it follows the face's position and size but keeps its own opening, and blended in over an ellipse around the
  mouth, its colour matched to the face around it. The face then shows the person's own lips and teeth, as open as
  the source is;
- its fine detail (the frame minus its Gaussian blur) elsewhere on the lower face, warped onto the generated
  shape by the unsmoothed flow. With shape=0 this is all that is added: the generator's shape, opening and colours
  stay, with the person's own texture.

The source is chosen by looks and by mouth opening: the bank knows each of its frames' measured opening (the
landmarks stage), and a source more open or more closed than wanted costs more (`opening_weight`). The opening
wanted is what the sound asks for (the generator's mouth control, `opening_from=sound`) or, for a model without
one, what the face looks like (a ridge regression from the blurred mouth region, fitted on the bank). Choosing a
new source every video frame would make the mouth shimmer, so a frame keeps its previous source (or that source's
next frame) while it is within (1 + switch_cost) of the best: the selection runs online, frame by frame, the same
in evaluate, render and a live session.

Measured in bench/results/lipsync.json (re-evaluated, same models; README "Lip-sync benchmark").
"""

from __future__ import annotations

from dataclasses import dataclass, fields, replace
from pathlib import Path
from typing import Callable

import cv2
import numpy as np

from clonetrain.core.config import MouthTextureCfg

# Where the mouth sits in our aligned crops (share of the crop side): the region the sources are matched on.
KEY_BOX = (0.25, 0.5, 0.75, 0.75)  # x0, y0, x1, y1
KEY_SIGMA = 1.0   # blur (px at 96) before matching: match the shape, not the detail the generator lacks
FEATHER = 8       # rows (at 96 px) over which the detail fades in below the middle of the crop
# The ellipse the source's mouth is placed over: centre x, y and radii x, y (share of the crop side). Whole inside
# 0.8 of the radii, fading out by 1.4, and over SHAPE_FEATHER rows below the middle of the crop (where the
# texture's lower half meets the upper face): the upper lip sits a row or two below it.
MOUTH_ELLIPSE = (0.49, 0.6, 0.2, 0.11)
SHAPE_FEATHER = 3
BANK_FILE_VERSION = 1


@dataclass(frozen=True)
class TextureSettings:
    """What config.MouthTextureCfg sets (its defaults are these), less what only the bank's builder reads."""
    amount: float = MouthTextureCfg.amount
    detail_sigma: float = MouthTextureCfg.detail_sigma
    switch_cost: float = MouthTextureCfg.switch_cost
    opening_weight: float = MouthTextureCfg.opening_weight
    opening_from: str = MouthTextureCfg.opening_from
    shape: float = MouthTextureCfg.shape
    align_sigma: float = MouthTextureCfg.align_sigma
    full_size: bool = MouthTextureCfg.full_size

    def __post_init__(self):
        if self.opening_from not in ("sound", "looks"):
            raise ValueError(f"mouth_texture.opening_from is {self.opening_from!r}: use sound or looks")

    @classmethod
    def from_cfg(cls, node) -> "TextureSettings":
        """From a `mouth_texture` config section: each field read by its own name, so a field added here is read."""
        return cls(**{f.name: type(getattr(cls, f.name))(node[f.name]) for f in fields(cls)})


def _scaled(value: float, size: int) -> float:
    return value * size / 96


def _blur(images: np.ndarray, sigma: float) -> np.ndarray:
    return np.stack([cv2.GaussianBlur(im, (0, 0), sigma) for im in images.astype(np.float32)]) if len(images) \
        else images.astype(np.float32)


class MouthBank:
    """Lower halves of the person's training face crops (n, S/2, S, 3) uint8 at the model's size, with their
    measured mouth opening (n,) (landmarks), their matching keys, and a ridge regression that reads the opening off
    a key; optionally the same lower halves at the full crop size (n, F/2, F, 3), which the texture paints from."""

    def __init__(self, lower: np.ndarray, size: int, opening: np.ndarray, full: np.ndarray | None = None):
        if lower.ndim != 4 or lower.shape[1:] != (size - size // 2, size, 3) or len(lower) < 1:
            raise ValueError(f"a mouth bank holds lower halves of {size} px crops, got {lower.shape}")
        if opening.shape != (len(lower),) or not np.isfinite(opening).all():
            raise ValueError(f"a mouth bank needs a measured opening per frame, got {opening.shape}")
        if full is not None and (full.ndim != 4 or len(full) != len(lower) or
                                 full.shape[1:] != (full.shape[2] - full.shape[2] // 2, full.shape[2], 3)):
            raise ValueError(f"a mouth bank's full-size mouths are lower halves of its frames, got {full.shape}")
        self.lower = np.ascontiguousarray(lower, dtype=np.uint8)
        self.size = size
        self.opening = opening.astype(np.float32)
        self.full = None if full is None else np.ascontiguousarray(full, dtype=np.uint8)
        self.full_size = size if full is None else full.shape[2]
        self.keys = self.key(self.lower)
        self._fit_opening()

    @classmethod
    def from_crops(cls, crops: np.ndarray, opening: np.ndarray, full: np.ndarray | None = None) -> "MouthBank":
        """From training face crops (n, S, S, 3), their mouth opening (the landmarks stage's) and, optionally, the
        same frames' full-size crops (n, F, F, 3)."""
        size = crops.shape[1]
        full = None if full is None or full.shape[1] == size else np.asarray(full)[:, full.shape[1] // 2 :]
        return cls(np.asarray(crops)[:, size // 2 :], size, np.asarray(opening), full)

    def _fit_opening(self, alpha: float = 100.0) -> None:
        """Ridge from standardised keys to the opening, in its dual form (fewer frames than key values). On
        held-out frames of two clones it reads the real opening at r 0.88 from real faces, 0.71-0.80 from
        generated ones."""
        k = self.keys.astype(np.float64)
        self._mean, self._scale = k.mean(0), k.std(0) + 1e-6
        x = (k - self._mean) / self._scale
        y = self.opening - self.opening.mean()
        self._weights = x.T @ np.linalg.solve(x @ x.T + alpha * np.eye(len(x)), y)
        self.spread = float(self.opening.std()) or 1.0  # the unit of an opening mismatch

    def estimate_opening(self, keys: np.ndarray) -> np.ndarray:
        return ((keys - self._mean) / self._scale) @ self._weights + float(self.opening.mean())

    def opening_at(self, z: np.ndarray) -> np.ndarray:
        """Openings from z-scores over the person's frames (what models.mouth_control predicts from the sound)."""
        return float(self.opening.mean()) + np.asarray(z, np.float64) * float(self.opening.std())

    def key(self, lower: np.ndarray) -> np.ndarray:
        """(n, S/2, S, 3) -> (n, d) float32: the blurred mouth region, at half resolution."""
        s, h = self.size, self.size // 2
        x0, y0, x1, y1 = (round(f * s) for f in KEY_BOX)
        region = lower[:, y0 - h : y1 - h, x0:x1]
        return _blur(region, _scaled(KEY_SIGMA, s))[:, ::2, ::2].reshape(len(lower), -1)

    def save(self, path: Path) -> None:
        """An .npz written to a temp file then renamed, so a killed write never leaves half a bank."""
        tmp = path.with_name(f".{path.name}.tmp")
        with open(tmp, "wb") as f:
            np.savez_compressed(f, lower=self.lower, opening=self.opening, size=np.int64(self.size),
                                version=np.int64(BANK_FILE_VERSION),
                                **({} if self.full is None else {"full": self.full}))
        tmp.replace(path)

    @classmethod
    def load(cls, path: Path) -> "MouthBank":
        with np.load(path) as z:
            if int(z["version"]) != BANK_FILE_VERSION:
                raise ValueError(f"{path}: mouth bank version {int(z['version'])}, this clonetrain reads "
                                 f"{BANK_FILE_VERSION}")
            # `full` came later, in the same version: a bank without it paints at the model's size
            return cls(z["lower"], int(z["size"]), z["opening"], z["full"] if "full" in z.files else None)


# The model's mouth control as numbers: audio windows (n, channels, window) -> the opening z-score they ask for.
Control = Callable[[np.ndarray], np.ndarray]


def from_cfg(bank: "MouthBank | None", node, control: Control | None = None) -> "MouthTexture | None":
    """The texture a `mouth_texture` config section asks for; None when it is off or there is no bank (a package
    made before banks existed). `control`: the model's mouth control, if it has one."""
    if bank is None or not node.enabled:
        return None
    return MouthTexture(bank, TextureSettings.from_cfg(node), control)


class MouthTexture:
    """Adds the person's own mouth detail to generated faces, one sequence at a time (see the module doc)."""

    def __init__(self, bank: MouthBank, settings: TextureSettings = TextureSettings(), control: Control | None = None):
        self.bank, self.settings = bank, settings
        # The opening the sound asks for, when the model can say (opening_from=sound and a fitted control).
        self.control = control if settings.opening_from == "sound" else None
        self.previous = -1  # the source of the last frame applied with follow=True
        self.sources: list[int] = []  # the bank frame each face of the last call took its detail from
        # Sources are chosen and placed at the model's size; the mouth is painted at the full size when the bank
        # has it, and faces come out at that size.
        self.size = bank.full_size if settings.full_size else bank.size
        self._paint = bank.full if self.size != bank.size else bank.lower
        s, h = self.size, self.size // 2
        self.mask = _fade_in(s - h, _scaled(FEATHER, s))[:, None, None]
        self._grid = np.mgrid[0 : s - h, 0:s].astype(np.float32)[::-1]  # x, y
        self.ellipse = _mouth_ellipse(s)
        # just around the ellipse, inside the detail mask: where the placed mouth's colour is matched to the face
        self._ring = (self.ellipse[..., 0] < 0.05) & (self.mask[..., 0] > 0.5)

    def at_model_size(self) -> "MouthTexture":
        """The same texture painting at the model's size (what the evaluation's judge compares with real crops)."""
        return MouthTexture(self.bank, replace(self.settings, full_size=False), self.control)

    def reset(self) -> None:
        """A new sequence (another take, another driver): no source to stay with."""
        self.previous = -1

    def __call__(self, faces: np.ndarray, follow: bool = True, windows: np.ndarray | None = None) -> np.ndarray:
        """faces (n, S, S, 3) uint8 at the bank's size, consecutive frames -> (n, F, F, 3): the faces at the size
        the texture paints at (`size`: the bank's full size, or S), the lower half textured.
        follow=False: frames beside the sequence (the frame a cut fades from): they use the current source as a
        hint but do not move it. windows (n, channels, window): the sound each face speaks (what the generator
        heard); the opening it asks for steers the choice of source when there is a control, else the looks do."""
        faces = np.asarray(faces)
        if len(faces) == 0:
            return resize(faces, self.size)
        h, top = self.bank.size // 2, self.size // 2
        keys = self.bank.key(faces[:, h:])
        dist = _distances(keys, self.bank.keys)
        if self.settings.opening_weight > 0:  # looks, relative to the best match, plus the opening mismatch
            if self.control is not None and windows is not None:
                wanted = self.bank.opening_at(self.control(np.asarray(windows, np.float32)))
            else:
                wanted = self.bank.estimate_opening(keys)
            gap = (self.bank.opening[None] - wanted[:, None]) / self.bank.spread
            dist = dist / np.maximum(dist.min(1, keepdims=True), 1e-6) + self.settings.opening_weight * gap**2
        out = resize(faces, self.size)
        out = out.copy() if out is faces else out  # resize made a new array already when the sizes differ
        previous = self.previous
        self.sources = []
        for i, row in enumerate(dist):
            source = self._choose(row, previous)
            self.sources.append(source)
            if follow:
                previous = source
            out[i, top:] = self._apply(faces[i, h:], self.bank.lower[source], out[i, top:], self._paint[source])
        if follow:
            self.previous = previous
        return out

    def _choose(self, row: np.ndarray, previous: int) -> int:
        """The closest source, unless the current one (or its next frame) is within (1 + switch_cost) of it."""
        best = int(np.argmin(row))
        if previous >= 0:
            keep = min((k for k in (previous, previous + 1) if k < len(row)), key=lambda k: row[k])
            if row[keep] <= (1 + self.settings.switch_cost) * row[best]:
                return keep
        return best

    def _apply(self, generated: np.ndarray, source: np.ndarray, canvas: np.ndarray, paint: np.ndarray) -> np.ndarray:
        """The lower half of a generated face with the source's mouth placed on it and its detail added. The flow
        between them is found at the model's size (generated, source); `canvas` (the generated lower half) and
        `paint` (the source's) are the same at the size painted at."""
        grey_gen = cv2.cvtColor(generated, cv2.COLOR_RGB2GRAY)
        grey_src = cv2.cvtColor(source, cv2.COLOR_RGB2GRAY)
        flow = cv2.calcOpticalFlowFarneback(grey_gen, grey_src, None, 0.5, 3, 9, 3, 5, 1.1, 0)
        out = canvas.astype(np.float32)
        detail = self._warp(paint, self._painted(flow), cv2.INTER_LINEAR)
        detail -= cv2.GaussianBlur(detail, (0, 0), _scaled(self.settings.detail_sigma, self.size))
        if self.settings.shape > 0:
            sigma = _scaled(self.settings.align_sigma, self.bank.size)
            smooth = np.dstack([cv2.GaussianBlur(np.ascontiguousarray(flow[..., k]), (0, 0), sigma) for k in (0, 1)])
            # Lanczos: a bilinear warp at sub-pixel shifts halves the mouth's sharpness (measured: 0.60 against 0.91)
            placed = self._warp(paint, self._painted(smooth), cv2.INTER_LANCZOS4)
            placed += (out[self._ring] - placed[self._ring]).mean(0)  # the face's light and skin tone
            alpha = self.settings.shape * self.ellipse
            out = out * (1 - alpha) + placed * alpha
            detail *= 1 - alpha  # the placed mouth brings its own
        out += self.settings.amount * self.mask * detail
        return np.clip(out, 0, 255).round().astype(np.uint8)

    def _painted(self, flow: np.ndarray) -> np.ndarray:
        """A flow found at the model's size, at the size painted at (its vectors scaled with it)."""
        if self.size == self.bank.size:
            return flow
        return cv2.resize(flow, (self.size, self.size - self.size // 2), interpolation=cv2.INTER_LINEAR) \
            * (self.size / self.bank.size)

    def _warp(self, source: np.ndarray, flow: np.ndarray, interpolation: int) -> np.ndarray:
        gx, gy = self._grid
        return cv2.remap(source, gx + flow[..., 0], gy + flow[..., 1], interpolation,
                         borderMode=cv2.BORDER_REFLECT).astype(np.float32)


def _mouth_ellipse(size: int) -> np.ndarray:
    """(S/2, S, 1) float32 weights over the lower half of a crop: 1 on the mouth, 0 away from it."""
    cx, cy, rx, ry = MOUTH_ELLIPSE
    y, x = np.mgrid[size // 2 : size, 0:size].astype(np.float32) / size
    d = np.sqrt(((x - cx) / rx) ** 2 + ((y - cy) / ry) ** 2)
    top = _fade_in(size - size // 2, _scaled(SHAPE_FEATHER, size))[:, None]
    return (np.clip((1.4 - d) / 0.6, 0, 1) * top).astype(np.float32)[..., None]


def _fade_in(rows: int, over: float) -> np.ndarray:
    """(rows,) float32 weights rising from the first row to 1 over `over` rows."""
    return np.clip((np.arange(rows) + 1) / (over + 1), 0, 1).astype(np.float32)


def resize(faces: np.ndarray, size: int) -> np.ndarray:
    """(n, S, S, 3) uint8 -> (n, size, size, 3): cubic up, area down; the same array when S is size already."""
    if faces.shape[1] == size:
        return faces
    how = cv2.INTER_CUBIC if size > faces.shape[1] else cv2.INTER_AREA
    out = np.empty((len(faces), size, size, 3), np.uint8)
    for i, f in enumerate(faces):
        out[i] = cv2.resize(np.ascontiguousarray(f), (size, size), interpolation=how)
    return out


def _distances(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    return np.maximum((a**2).sum(1)[:, None] - 2 * a @ b.T + (b**2).sum(1)[None], 0)

