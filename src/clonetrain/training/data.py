"""Datasets over preprocessed clones. Everything is computed by the preprocessing stages; __getitem__ only
looks up frames and mel windows.

A sample is a window of T consecutive usable frames of one take (T = model.sync_frames), each with a
reference frame of the same person and its centred mel window, plus the mel window spanning the whole window
(for the sync expert) and one taken from elsewhere in the same take (a negative for the expert).
"""

from __future__ import annotations


from dataclasses import dataclass

import numpy as np
import torch
from torch.utils.data import Dataset

from clonetrain.errors import UpstreamMissingError
from clonetrain.models.lipsync import MEL_WINDOW
from clonetrain.stages.faces import UNUSABLE
from clonetrain.workspace import Workspace

# Log-mel dB (floor -100) to roughly [-1.5, 1.5]: fixed, so every clone and the runtime agree.
MEL_CENTER, MEL_SCALE = -40.0, 40.0


@dataclass
class Clip:
    """The arrays of one preprocessed clone."""

    clone: str
    faces: np.ndarray        # (N, S, S, 3) uint8, memory-mapped
    mel: np.ndarray          # (T, n_mels) float32, normalised
    usable: np.ndarray       # (N,) a face to learn from, in a take with speech
    take: np.ndarray         # (N,)
    mouth_open: np.ndarray   # (N,)
    valid_landmarks: np.ndarray
    energy: np.ndarray
    fps: int
    mel_per_frame: float

    @property
    def n(self) -> int:
        return len(self.usable)

    def split(self, holdout: float) -> int:
        """First held-out frame: the last `holdout` share of the footage is never trained on."""
        return int(round(self.n * (1 - holdout)))

    def mel_window(self, centre_frame: float) -> np.ndarray:
        """(n_mels, 16) around the time of `centre_frame` (a frame's centre is at index + 0.5)."""
        start = int(round(centre_frame * self.mel_per_frame - MEL_WINDOW / 2))
        start = min(max(start, 0), len(self.mel) - MEL_WINDOW)
        return self.mel[start : start + MEL_WINDOW].T


def load_clip(ws: Workspace, size: int, n_mels: int | None = None) -> Clip:
    """The clone's preprocessed arrays at `size` px; `n_mels`: the mel bands the model hears, checked against
    those the audio stage computed."""
    for stage in ("ingest", "faces", "landmarks", "audio"):
        if ws.read_manifest(stage) is None:
            raise UpstreamMissingError(f"clone {ws.clone!r} has not been preprocessed (no {stage} output)",
                                       f"run: python -m clonetrain stage=preprocess clone={ws.clone}")
    faces_dir = ws.stage_dir("faces")
    path = faces_dir / f"crops_{size}.npy"
    if not path.is_file():
        raise UpstreamMissingError(f"clone {ws.clone!r} has no {size} px crops (faces.train_size differs)",
                                   f"rerun: python -m clonetrain stage=preprocess clone={ws.clone} faces.train_size={size}")
    flags = np.load(faces_dir / "faces.npz")["flags"]
    lm = np.load(ws.stage_dir("landmarks") / "landmarks.npz")
    frames = np.load(ws.stage_dir("ingest") / "frames.npz")
    audio_manifest = ws.read_manifest("audio")
    mel = (np.load(ws.stage_dir("audio") / "mel.npy") - MEL_CENTER) / MEL_SCALE
    if n_mels is not None and mel.shape[1] != n_mels:
        raise UpstreamMissingError(f"clone {ws.clone!r} has {mel.shape[1]} mel bands but the model hears {n_mels}",
                                   f"rerun: python -m clonetrain stage=audio clone={ws.clone} force=true "
                                   f"audio_features.n_mels={n_mels}")
    usable = ((flags & UNUSABLE) == 0) & frames["lipsync"] & lm["valid"]
    return Clip(clone=ws.clone, faces=np.load(path, mmap_mode="r"), mel=mel.astype(np.float32), usable=usable,
                take=frames["take"], mouth_open=lm["mouth_open"], valid_landmarks=lm["valid"],
                energy=np.load(ws.stage_dir("audio") / "energy.npy"), fps=int(frames["fps"]),
                mel_per_frame=float(audio_manifest["counts"]["mel_per_video_frame"]))


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
        }


def reference_frame(clip: Clip, hi: int) -> int:
    """One frame to stand for the person at render and evaluation time: a usable training frame with the
    mouth near its median opening (neither shut tight nor wide open)."""
    cand = np.flatnonzero(clip.usable[:hi] & clip.valid_landmarks[:hi])
    if cand.size == 0:
        raise no_training_frame(clip, 0, hi)
    mouth = clip.mouth_open[cand]
    return int(cand[np.argmin(np.abs(mouth - np.median(mouth)))])
