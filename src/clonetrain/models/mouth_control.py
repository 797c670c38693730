"""Mouth control: how open the mouth is, estimated from the sound alone, the same way for any voice.

Trained on one person's minute, the generator's audio path learns that person's voice: driven by another voice
its lips barely follow (issue 13: cross-speaker r 0.12-0.24). A plain ridge regression from the same audio
window to the mouth opening, fitted on many people, follows other people's mouths far better (Whisper layer 2,
fitted on the corpus: r 0.57 over the six evaluation drivers; on talk_man alone 0.48). So the generator gets the
opening as an explicit input, a control, next to the sound:

- in training, the real opening of the target frame (the landmarks stage's inner-lip gap, as a z-score over the
  clip): the generator learns to draw a mouth that open;
- at evaluation, render and live, the opening this regression predicts from the sound (forward(), no argument
  needed: the regression lives in the generator's buffers, so every caller that feeds the generator sound gets
  it, and the package carries it).

The regression is fitted in closed form before training: a base on all its clips; a clone on its own training
frames, pulled towards its base's weights (a prior) so that one voice does not undo what many voices taught.
"""

from __future__ import annotations

import itertools
import logging
from typing import Iterable

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

log = logging.getLogger(__name__)

STEPS = 5  # the 0.2 s window pooled to one step per video frame (25 fps)


def pooled(windows: torch.Tensor) -> torch.Tensor:
    """(B, 1, dims, W) model input -> (B, dims * STEPS): the regression's features."""
    return F.adaptive_avg_pool1d(windows.flatten(1, -2), STEPS).flatten(1)


def zscore(opening: np.ndarray, valid: np.ndarray) -> np.ndarray:
    """A clip's openings as z-scores over its valid frames (people and framings differ in scale); NaN elsewhere."""
    out = np.full(len(opening), np.nan, np.float32)
    ok = valid & np.isfinite(opening)
    if ok.sum() < 2:
        return out
    v = opening[ok].astype(np.float64)
    out[ok] = (v - v.mean()) / max(v.std(), 1e-6)
    return out


class MouthControl(nn.Module):
    """The regression from pooled sound to the z-scored opening, in buffers (saved with the generator)."""

    def __init__(self, dims: int):
        super().__init__()
        self.register_buffer("weight", torch.zeros(dims * STEPS))
        self.register_buffer("mean", torch.zeros(dims * STEPS))
        # Ridge predictions shrink towards the mean; the gain restores the spread the training frames had, so
        # the mouth opens as wide as the person's does.
        self.register_buffer("gain", torch.zeros(()))
        self.register_buffer("frames", torch.zeros(()))  # frames it was fitted on; 0: not fitted (predicts 0)

    @property
    def fitted(self) -> bool:
        return bool(self.frames > 0)

    def forward(self, windows: torch.Tensor) -> torch.Tensor:
        """(B, 1, dims, W) -> (B,) predicted opening z-score."""
        return ((pooled(windows) - self.mean) @ self.weight) * self.gain

    @torch.no_grad()
    def fit(self, samples: Iterable[tuple[np.ndarray, np.ndarray]], ridge: float | None = None,
            prior: "MouthControl | None" = None) -> dict:
        """samples: (windows (n, dims, W), z-scored openings (n,)) per clip. With a fitted prior, the weights are
        pulled towards the prior's with this ridge; otherwise ridge around 0. ridge None: chosen from RIDGES by
        cross-validation over FOLDS, clip by clip when there are several clips (so the choice favours voices it
        has not heard), in contiguous blocks of one clip otherwise."""
        stats = _fold_stats(samples, self.weight.numel())
        total = sum(stats[1:], stats[0]) if stats else None
        if total is None or total.n < 2:
            return {"frames": 0 if total is None else total.n, "fitted": False}
        use_prior = prior is not None and prior.fitted
        w0 = prior.weight.double().numpy() if use_prior else np.zeros(self.weight.numel())
        scores = None
        if ridge is None and (len(stats) < 2 or total.n < MIN_FRAMES_TO_VALIDATE):
            ridge = FALLBACK_RIDGE  # too few frames to hold some out and learn from the rest
        elif ridge is None:
            scores = _held_out_errors(stats, RIDGES, w0)
            ridge = min(scores, key=scores.get)
        w, mu = total.solve(ridge, w0)
        var_pred = float(w @ (total.cxx(mu) / total.n) @ w)  # the predictions' spread; the z-scores' is 1
        gain = float(np.sqrt(1.0 / var_pred)) if var_pred > 1e-9 else 1.0
        self.weight.copy_(torch.from_numpy(w).float())
        self.mean.copy_(torch.from_numpy(mu).float())
        self.gain.fill_(min(gain, 4.0))
        self.frames.fill_(float(total.n))
        info = {"frames": total.n, "fitted": True, "prior": use_prior, "ridge": ridge,
                "gain": round(float(self.gain), 3),
                "ridge_scores": {str(k): round(v, 4) for k, v in scores.items()} if scores else None}
        log.info("mouth control fitted: %s", info)
        return info


def predictor(control: "MouthControl | None"):
    """The control as numbers, (n, channels, window) float32 -> (n,) z-scores; None when there is no fitted one
    (the mouth texture then reads the opening off the face)."""
    if control is None or not control.fitted:
        return None

    @torch.no_grad()
    def predict(windows: np.ndarray) -> np.ndarray:
        return control(torch.from_numpy(np.asarray(windows, np.float32))[:, None].to(control.weight.device)).cpu().numpy()

    return predict


# The ridges tried (features differ in scale by encoder, and data in size, so no one value suits all), and the
# number of folds the choice is cross-validated over. Half decades: on the corpus the best lies between two decades
# (3000: held-out error 0.624, against 0.640 and 0.632 at 1000 and 10000), and it follows other voices better
# (mean r over the six evaluation drivers 0.584, against 0.575 at 10000, which whole decades chose).
RIDGES = (1.0, 3.0, 10.0, 30.0, 100.0, 300.0, 1000.0, 3000.0, 10000.0, 30000.0, 100000.0, 300000.0)
FOLDS = 5
FALLBACK_RIDGE = 1000.0  # what cross-validation chose on talk_man's minute
MIN_FRAMES_TO_VALIDATE = 50  # 2 s: fewer, and each fold holds a handful of frames


class _Stats:
    """Sufficient statistics of a linear regression: sums of x x^T, x z, x, z, z^2 and the count; and the frames
    themselves while there are at most half as many as dimensions (a clone's minute against Whisper's 2560), where
    the cross-validation's decomposition is far cheaper on the frames than on x x^T (near d it is not)."""

    def __init__(self, d: int):
        self.xtx, self.xty, self.sx = np.zeros((d, d)), np.zeros(d), np.zeros(d)
        self.sy = self.syy = 0.0
        self.n = 0
        self.rows: list[np.ndarray] | None = []

    def add(self, x: np.ndarray, z: np.ndarray) -> None:
        self.xtx += x.T @ x
        self.xty += x.T @ z
        self.sx += x.sum(0)
        self.sy += float(z.sum())
        self.syy += float(z @ z)
        self.n += len(z)
        self.rows = self.rows + [x] if self.rows is not None and self.n <= len(self.sx) // 2 else None

    def __add__(self, other: "_Stats") -> "_Stats":
        out = _Stats(len(self.sx))
        for k in ("xtx", "xty", "sx", "sy", "syy", "n"):
            setattr(out, k, getattr(self, k) + getattr(other, k))
        both = self.rows is not None and other.rows is not None and out.n <= len(out.sx) // 2
        out.rows = self.rows + other.rows if both else None
        return out

    def eigen(self, mu: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Eigenvalues and eigenvectors (columns) of the centred x x^T that can be non-zero. With the frames at
        hand, from their SVD (n x d: n^2 d, not d^3); the other directions have eigenvalue 0."""
        if self.rows is None:
            return np.linalg.eigh(self.cxx(mu))
        _, singular, vt = np.linalg.svd(np.concatenate(self.rows) - mu, full_matrices=False)
        return singular**2, vt.T

    def cxx(self, mu: np.ndarray) -> np.ndarray:
        return self.xtx - np.outer(self.sx, mu) - np.outer(mu, self.sx) + self.n * np.outer(mu, mu)

    def solve(self, ridge: float, w0: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Weights and feature mean of the ridge regression, centred on these frames, ridge around w0."""
        mu = self.sx / self.n
        cxy = self.xty - mu * self.sy  # sum (x - mu)(z - mean z)
        return np.linalg.solve(self.cxx(mu) + ridge * np.eye(len(mu)), cxy + ridge * w0), mu

    def error(self, w: np.ndarray, mu: np.ndarray, intercept: float) -> float:
        """Sum over these frames of (z - intercept - (x - mu) w)^2."""
        k = intercept - mu @ w
        return float(self.syy + w @ self.xtx @ w + self.n * k * k - 2 * w @ self.xty - 2 * k * self.sy
                     + 2 * k * (self.sx @ w))


def _fold_stats(samples: Iterable[tuple[np.ndarray, np.ndarray]], d: int) -> list[_Stats]:
    """Statistics per fold: clips dealt round-robin into FOLDS folds, or one clip cut into FOLDS blocks. The clips
    are read one at a time: a studio's archive may hold hours."""
    folds = [_Stats(d) for _ in range(FOLDS)]
    clips = iter(samples)
    first, second = next(clips, None), next(clips, None)
    if first is not None and second is None:
        x, z = _features(*first)
        for f, part in enumerate(np.array_split(np.arange(len(z)), FOLDS)):
            folds[f].add(x[part], z[part])
    elif first is not None:
        for i, clip in enumerate(itertools.chain([first, second], clips)):
            folds[i % FOLDS].add(*_features(*clip))
    return [f for f in folds if f.n > 0]


def _features(windows: np.ndarray, z: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """The regression's inputs and targets of one clip's frames with a target."""
    ok = np.isfinite(z)
    x = pooled(torch.from_numpy(np.asarray(windows[ok], np.float32))[:, None]).double().numpy()
    return x, np.asarray(z[ok], np.float64)


def _held_out_errors(folds: list[_Stats], ridges: Iterable[float], w0: np.ndarray) -> dict[float, float]:
    """{ridge: mean squared error of each fold predicted by the regression fitted on the others} (at least two
    folds). One eigendecomposition per fold serves every ridge: (C + r I)^-1 = V diag(1 / (e + r)) V^T, where a
    solve per ridge would factor the matrix again (12 ridges x 5 folds of 2560 x 2560 for Whisper features). A
    clone's folds have fewer frames than dimensions: their decomposition comes from the frames (_Stats.eigen)."""
    ridges = list(ridges)
    sse, n = dict.fromkeys(ridges, 0.0), 0
    for i, held in enumerate(folds):
        rest = [f for j, f in enumerate(folds) if j != i]
        train = sum(rest[1:], rest[0])
        mu = train.sx / train.n
        values, vectors = train.eigen(mu)
        b, p = vectors.T @ (train.xty - mu * train.sy), vectors.T @ w0
        w0_rest = w0 - vectors @ p  # outside the frames' span: eigenvalue 0, so the weights stay at w0 there
        for ridge in ridges:
            w = vectors @ ((b + ridge * p) / (values + ridge)) + w0_rest
            sse[ridge] += held.error(w, mu, train.sy / train.n)
        n += held.n
    return {ridge: e / n for ridge, e in sse.items()}
