"""Datasets over preprocessed clones. Everything is computed by the preprocessing stages; __getitem__ only
looks up frames and audio windows.

A sample is a window of T consecutive usable frames of one take (T = model.sync_frames), each with a
reference frame of the same person and its centred audio window, plus the audio window spanning the whole
window (for the sync expert) and one taken from elsewhere in the same take (a negative for the expert). The
audio is whichever features the audio stage computed (log-mel or Whisper; audio_analysis.model_input): "mel" below
names the model's audio input, whatever its encoder.
"""

from __future__ import annotations

import numpy as np
import torch
from torch.utils.data import Dataset

from clonetrain.contract.clip import Clip
from clonetrain.core.errors import UpstreamMissingError
from clonetrain.models.mouth_control import zscore


def no_training_frame(clip: Clip, lo: int, hi: int) -> UpstreamMissingError:
    """The error for a clone without a single frame to learn from, saying why the frames were left out."""
    n = max(hi - lo, 0)
    no_landmarks = int((~clip.valid_landmarks[lo:hi]).sum())
    flagged = n - no_landmarks
    why = (f"of its {n} training frames, {no_landmarks} have no face or landmarks and {flagged} are flagged "
           "(face too small, blurred, in profile or several faces) or belong to takes without speech")
    return UpstreamMissingError(
        f"clone {clip.clone!r} has no usable training frame: {why}" if n else
        f"clone {clip.clone!r} has no usable training frame: no frames before the held-out part",
        f"see each take's verdict in data/work/{clip.clone}/report/report.html; add takes of the person speaking, "
        "facing the camera, the face at least faces.min_face_px tall")


def window_starts(clip: Clip, lo: int, hi: int, length: int) -> np.ndarray:
    """Starts of windows of `length` usable frames of one take inside [lo, hi)."""
    ok = clip.usable[lo:hi]
    same = clip.take[lo:hi]
    starts = []
    for s in range(0, len(ok) - length + 1):
        if ok[s : s + length].all() and same[s] == same[s + length - 1]:
            starts.append(lo + s)
    return np.array(starts, dtype=np.int64)


def to_tensor(frames: np.ndarray) -> torch.Tensor:
    """(..., S, S, 3) uint8 -> (..., 3, S, S) float in [0, 1]."""
    t = torch.from_numpy(np.array(frames, np.uint8)).float().div_(255.0)  # a copy: memmaps are read-only
    return t.movedim(-1, -3)


def augment(frames: torch.Tensor, refs: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """The same random mirror, exposure, contrast and colour cast for a window and its references: to a base
    trained on a few people, each sample looks like one more person in other light."""
    if torch.rand(()) < 0.5:
        frames, refs = frames.flip(-1), refs.flip(-1)
    gain = torch.empty(3, 1, 1).uniform_(0.9, 1.1) * torch.empty(()).uniform_(0.75, 1.25)
    contrast = torch.empty(()).uniform_(0.8, 1.2)

    def apply(x: torch.Tensor) -> torch.Tensor:
        mean = x.mean(dim=(-3, -2, -1), keepdim=True)
        return (((x - mean) * contrast + mean) * gain).clamp_(0, 1)

    return apply(frames), apply(refs)


class WindowDataset(Dataset):
    def __init__(self, clip: Clip, lo: int, hi: int, length: int, ref_lo: int, ref_hi: int, augment: bool = False):
        """Windows from frames [lo, hi); reference frames drawn from usable frames in [ref_lo, ref_hi)
        (always the training part, so held-out frames never leak in as references). `augment`: see augment()."""
        self.clip, self.length, self.augment = clip, length, augment
        self.starts = window_starts(clip, lo, hi, length)
        self.refs = np.flatnonzero(clip.usable[ref_lo:ref_hi]) + ref_lo
        if len(self.refs) == 0:
            raise no_training_frame(clip, ref_lo, ref_hi)
        # The mouth control's target: the opening as a z-score over the clip (NaN where no landmarks).
        self.opening_z = zscore(clip.mouth_open, clip.valid_landmarks)
        self.opening = np.nan_to_num(self.opening_z, nan=0.0)  # shown in training: the mean where unknown

    def frames(self) -> np.ndarray:
        """Every frame some window covers."""
        return np.unique((self.starts[:, None] + np.arange(self.length)).ravel()) if len(self.starts) else self.starts

    def control_samples(self) -> tuple[np.ndarray, np.ndarray]:
        """(audio windows, opening z-scores) of the frames with landmarks: what models.mouth_control fits on."""
        f = self.frames()
        f = f[np.isfinite(self.opening_z[f])]
        return (np.stack([self.clip.mel_window(t + 0.5) for t in f]) if f.size else np.zeros((0, 1, 1), np.float32),
                self.opening_z[f])

    def __len__(self) -> int:
        return len(self.starts)

    def __getitem__(self, idx: int) -> dict[str, torch.Tensor]:
        c, t0, T = self.clip, int(self.starts[idx]), self.length
        # Random but reproducible: torch's generator is seeded by Lightning (train.seed) in every worker.
        ref_idx = self.refs[torch.randint(len(self.refs), (T,)).numpy()]
        frames = np.asarray(c.faces[t0 : t0 + T])
        refs = np.asarray(c.faces[ref_idx])
        mels = np.stack([c.mel_window(t + 0.5) for t in range(t0, t0 + T)])
        sync_mel = c.mel_window(t0 + T / 2)
        # A negative: the sound of a window at least T frames away in the same take.
        same_take = np.flatnonzero(c.take == c.take[t0])
        far = same_take[np.abs(same_take - t0) >= T]
        neg_t = far[torch.randint(len(far), (1,)).item()] if len(far) else (t0 + c.n // 2) % c.n
        neg_mel = c.mel_window(neg_t + T / 2)
        frames, refs = to_tensor(frames), to_tensor(refs)
        if self.augment:
            frames, refs = augment(frames, refs)
        return {
            "frames": frames, "refs": refs,
            "mels": torch.from_numpy(mels).unsqueeze(1), "sync_mel": torch.from_numpy(sync_mel)[None],
            "neg_mel": torch.from_numpy(neg_mel)[None], "start": torch.tensor(t0),
            "control": torch.from_numpy(self.opening[t0 : t0 + T].astype(np.float32)),
        }


def reference_frame(clip: Clip, hi: int) -> int:
    """One frame to stand for the person at render and evaluation time: a usable training frame with the
    mouth near its median opening (neither shut tight nor wide open)."""
    cand = np.flatnonzero(clip.usable[:hi] & clip.valid_landmarks[:hi])
    if cand.size == 0:
        raise no_training_frame(clip, 0, hi)
    mouth = clip.mouth_open[cand]
    return int(cand[np.argmin(np.abs(mouth - np.median(mouth)))])
