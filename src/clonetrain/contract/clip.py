"""A preprocessed clone as arrays: its face crops, audio features, usable frames, takes, mouth opening and speech
energy, read from the ingest, faces, landmarks and audio stages. Training, evaluation, render and the package all
read a clone through this one reader.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from clonetrain.audio_analysis.model_input import FeatureSpec, check_matches
from clonetrain.contract import faces, files
from clonetrain.core.errors import UpstreamMissingError
from clonetrain.core.workspace import Workspace


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
    if not files.exists(ws, "audio", "features"):  # preprocessed before the audio stage wrote features.json
        raise UpstreamMissingError(f"clone {ws.clone!r} was preprocessed by an older version (no audio/features.json)",
                                   f"rerun: python -m clonetrain stage=audio clone={ws.clone} force=true")
    meta = files.read_json(ws, "audio", "features")
    return FeatureSpec.from_dict(meta["spec"]), files.load(ws, "audio", "feature_array", meta["file"]).astype(np.float32)


def load_clip(ws: Workspace, size: int, hears=None) -> Clip:
    """The clone's preprocessed arrays at `size` px. `hears`: the ModelSpec of a trained model, whose audio
    input is checked against the features the audio stage computed (a clear error says which rerun fixes it)."""
    for stage in ("ingest", "faces", "landmarks", "audio"):
        if files.manifest(ws, stage) is None:
            raise files.missing(ws, stage, "not preprocessed")
    if not files.exists(ws, "faces", "crops", size):
        raise UpstreamMissingError(f"clone {ws.clone!r} has no {size} px crops (faces.train_size differs)",
                                   f"rerun: python -m clonetrain stage=preprocess clone={ws.clone} faces.train_size={size}")
    flags = files.read(ws, "faces", "faces").flags
    lm = files.read(ws, "landmarks", "landmarks")
    frames = files.read(ws, "ingest", "frames")
    spec, raw = read_features(ws)
    if hears is not None:
        check_matches(spec, hears.audio_input, hears.n_mels, ws.clone)
    usable = faces.usable(flags) & frames.lipsync & lm.valid
    return Clip(clone=ws.clone, faces=files.load(ws, "faces", "crops", size, mmap_mode="r"), mel=spec.normalise(raw),
                usable=usable, take=frames.take, mouth_open=lm.mouth_open, valid_landmarks=lm.valid,
                energy=files.load(ws, "audio", "energy"), fps=int(frames.fps), features=spec)


def check_configured(clip: Clip, audio_cfg, sample_rate: int) -> None:
    """Training hears the features the audio stage computed; if `audio_features` now asks for others, the audio
    stage has to run again first (stage=train alone does not rerun it)."""
    wanted = FeatureSpec.from_cfg(audio_cfg, sample_rate)
    check_matches(clip.features, wanted.signature, wanted.dims, clip.clone, what="audio_features")
