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
    def fit(self, samples: Iterable[tuple[np.ndarray, np.ndarray]], ridge: float,
            prior: "MouthControl | None" = None) -> dict:
        """samples: (windows (n, dims, W), z-scored openings (n,)) per clip. With a fitted prior, the weights are
        pulled towards the prior's (ridge around them); otherwise ridge around 0."""
        d = self.weight.numel()
        xtx, xty, sx, sy, n = np.zeros((d, d)), np.zeros(d), np.zeros(d), 0.0, 0
        for windows, z in samples:
            ok = np.isfinite(z)
            if not ok.any():
                continue
            x = pooled(torch.from_numpy(np.asarray(windows[ok], np.float32))[:, None]).double().numpy()
            xtx += x.T @ x
            xty += x.T @ z[ok]
            sx += x.sum(0)
            sy += float(z[ok].sum())
            n += int(ok.sum())
        if n < 2:
            return {"frames": n, "fitted": False}
        use_prior = prior is not None and prior.fitted
        mu = sx / n
        cxx = xtx - n * np.outer(mu, mu)  # sum (x - mu)(x - mu)^T
        cxy = xty - mu * sy                # sum (x - mu)(z - mean z)
        w0 = prior.weight.double().numpy() if use_prior else np.zeros(d)
        w = np.linalg.solve(cxx + ridge * np.eye(d), cxy + ridge * w0)
        var_pred = float(w @ (cxx / n) @ w)  # the predictions' spread over the same frames; the z-scores' is 1
        gain = float(np.sqrt(1.0 / var_pred)) if var_pred > 1e-9 else 1.0
        self.weight.copy_(torch.from_numpy(w).float())
        self.mean.copy_(torch.from_numpy(mu).float())
        self.gain.fill_(min(gain, 4.0))
        self.frames.fill_(float(n))
        info = {"frames": n, "fitted": True, "prior": use_prior, "ridge": ridge, "gain": round(float(self.gain), 3)}
        log.info("mouth control fitted: %s", info)
        return info
