"""Datasets over preprocessed clones. Everything is computed by the preprocessing stages; __getitem__ only
looks up frames and audio windows.

A sample is a window of T consecutive usable frames of one take (T = model.sync_frames), each with a
reference frame of the same person and its centred audio window, plus the audio window spanning the whole
window (for the sync expert) and one taken from elsewhere in the same take (a negative for the expert). The
audio is whichever features the audio stage computed (log-mel or Whisper; audio.model_input): "mel" below
names the model's audio input, whatever its encoder.
"""

from __future__ import annotations

import json
from dataclasses import dataclass

import numpy as np
import torch
from torch.utils.data import Dataset

from clonetrain.audio.model_input import FeatureSpec, check_matches
from clonetrain.errors import UpstreamMissingError
from clonetrain.stages.faces import UNUSABLE
from clonetrain.workspace import Workspace


@dataclass
class Clip:
    """The arrays of one preprocessed clone."""

    clone: str
    faces: np.ndarray        # (N, S, S, 3) uint8, memory-mapped
    mel: np.ndarray          # (T, channels) float32 audio features, normalised (features.per_second frames/s)
    usable: np.ndarray       # (N,) a face to learn from, in a take with speech
    take: np.ndarray         # (N,)
    mouth_open: np.ndarray   # (N,)
    valid_landmarks: np.ndarray
    energy: np.ndarray
    fps: int
    features: FeatureSpec    # what `mel` is, and how to window it

    @property
    def n(self) -> int:
        return len(self.usable)

    def split(self, holdout: float) -> int:
        """First held-out frame: the last `holdout` share of the footage is never trained on."""
        return int(round(self.n * (1 - holdout)))

    def mel_window(self, centre_frame: float) -> np.ndarray:
        """(channels, window) around the time of `centre_frame` (a frame's centre is at index + 0.5)."""
        return self.features.window_at(self.mel, centre_frame, self.fps)


def read_features(ws: Workspace) -> tuple[FeatureSpec, np.ndarray]:
    """The audio stage's features of the clone: their spec and the raw (un-normalised) array."""
    d = ws.stage_dir("audio")
    info = d / "features.json"
    if not info.is_file():  # preprocessed before the audio stage wrote features.json: log-mel then
        raise UpstreamMissingError(f"clone {ws.clone!r} was preprocessed by an older version (no audio/features.json)",
                                   f"rerun: python -m clonetrain stage=audio clone={ws.clone} force=true")
    meta = json.loads(info.read_text())
    return FeatureSpec.from_dict(meta["spec"]), np.load(d / meta["file"]).astype(np.float32)


def load_clip(ws: Workspace, size: int, hears=None) -> Clip:
    """The clone's preprocessed arrays at `size` px. `hears`: the ModelSpec of a trained model, whose audio
    input is checked against the features the audio stage computed (a clear error says which rerun fixes it)."""
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
    spec, raw = read_features(ws)
    if hears is not None:
        check_matches(spec, hears.audio_input, hears.n_mels, ws.clone)
    usable = ((flags & UNUSABLE) == 0) & frames["lipsync"] & lm["valid"]
    return Clip(clone=ws.clone, faces=np.load(path, mmap_mode="r"), mel=spec.normalise(raw), usable=usable,
                take=frames["take"], mouth_open=lm["mouth_open"], valid_landmarks=lm["valid"],
                energy=np.load(ws.stage_dir("audio") / "energy.npy"), fps=int(frames["fps"]), features=spec)


def check_configured(clip: Clip, audio_cfg, sample_rate: int) -> None:
    """Training hears the features the audio stage computed; if `audio_features` now asks for others, the audio
    stage has to run again first (stage=train alone does not rerun it)."""
    wanted = FeatureSpec.from_cfg(audio_cfg, sample_rate)
    check_matches(clip.features, wanted.signature, wanted.dims, clip.clone, what="audio_features")


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
            raise UpstreamMissingError(f"clone {clip.clone!r} has no usable training frame")

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
        raise UpstreamMissingError(f"clone {clip.clone!r} has no usable training frame")
    mouth = clip.mouth_open[cand]
    return int(cand[np.argmin(np.abs(mouth - np.median(mouth)))])
