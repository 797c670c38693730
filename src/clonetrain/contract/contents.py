"""What the stages' shared data files hold, written down once.

The per-frame arrays (ingest/frames.npz, faces/faces.npz, landmarks/landmarks.npz) are dataclasses: their fields
are the arrays, in the order they are written. A stage writes one with `files.write` and later stages get it back,
typed, from `files.read`; an array missing from a file that an older clonetrain wrote is an error saying which
stage to rerun, not a KeyError deep inside another stage.

The JSON records other stages read are declared by the keys those readers rely on (RECORDS): `files.write_record`
refuses a record without them, `files.read_json` names the rerun when an old one lacks them.
"""

from __future__ import annotations

from dataclasses import dataclass, fields
from pathlib import Path
import numpy as np

from clonetrain.core.errors import ClonetrainError


class ContractError(ClonetrainError):
    """A stage wrote something its declaration here does not allow: a bug in clonetrain, not in the footage."""


class Arrays:
    """Base of an .npz declared as a dataclass. Every array with an axis has one row per frame of the clone's
    footage; 0-d arrays are settings the stage ran with."""

    def arrays(self) -> dict[str, np.ndarray]:
        return {f.name: getattr(self, f.name) for f in fields(self)}

    def check(self) -> None:
        lengths = {k: len(v) for k, v in self.arrays().items() if np.ndim(v)}
        if len(set(lengths.values())) > 1:
            raise ContractError(f"{type(self).__name__} arrays disagree on the number of frames: {lengths}")

    def write(self, path: Path) -> None:
        self.check()
        np.savez(path, **self.arrays())  # inside the stage's build folder, which is swapped into place whole

    @classmethod
    def read(cls, path: Path, stale) -> "Arrays":
        """`stale(missing names)`: the error for a file written before an array was declared."""
        with np.load(path) as z:
            missing = [f.name for f in fields(cls) if f.name not in z.files]
            if missing:
                raise stale(", ".join(missing))
            return cls(**{f.name: z[f.name] for f in fields(cls)})


@dataclass
class FrameIndex(Arrays):
    """ingest/frames.npz: where each frame of the clone's footage comes from."""
    take: np.ndarray        # (N,) the take it is in (ingest's takes.json row)
    frame: np.ndarray       # (N,) its number inside that take
    lipsync: np.ndarray     # (N,) bool: in a take with enough of the person's speech to learn lip-sync from
    fps: np.ndarray         # () the footage's frame rate after ingest


@dataclass
class Faces(Arrays):
    """faces/faces.npz: the face found in each frame (boxes in frame pixels, x0 y0 x1 y1)."""
    box: np.ndarray         # (N, 4) the main face's box, smoothed over the take (NaN: none)
    raw_box: np.ndarray     # (N, 4) the detector's box before smoothing (NaN: none)
    square: np.ndarray      # (N, 3) the square the crops are cut from: x0, y0, side (NaN: none)
    score: np.ndarray       # (N,) detector confidence
    flags: np.ndarray       # (N,) contract.faces bit flags (UNUSABLE: nothing learns from the frame)
    sharpness: np.ndarray   # (N,) variance of the crop's Laplacian (low: blurred)
    profile: np.ndarray     # (N,) nose off the eyes' midpoint over the eye distance: ~0 frontal, 0.5+ profile
    n_faces: np.ndarray     # (N,) faces the detector saw
    crop_size: np.ndarray   # () side of crops_<crop_size>.npy
    train_size: np.ndarray  # () side of crops_<train_size>.npy


@dataclass
class Landmarks(Arrays):
    """landmarks/landmarks.npz: 68 iBUG points per frame."""
    points: np.ndarray        # (N, 68, 2) in crop pixels, smoothed within each take (NaN: not found)
    points_frame: np.ndarray  # (N, 68, 2) the same in frame pixels
    valid: np.ndarray         # (N,) bool: points were found
    pose: np.ndarray          # (N, 3) head yaw, pitch, roll in degrees
    mouth_open: np.ndarray    # (N,) inner-lip gap over the eye distance: ~0 closed, ~0.3 wide open
    crop_size: np.ndarray     # () the crops the points were found on


# (stage, file name in contract.files.FILES) -> its dataclass.
ARRAYS: dict[tuple[str, str], type[Arrays]] = {
    ("ingest", "frames"): FrameIndex,
    ("faces", "faces"): Faces,
    ("landmarks", "landmarks"): Landmarks,
}


@dataclass(frozen=True)
class Record:
    """A JSON file other stages read: the keys they rely on (of the object, or of every row of a list)."""
    keys: tuple[str, ...]
    rows: bool = False


RECORDS: dict[tuple[str, str], Record] = {
    ("ingest", "takes"): Record(("take", "file", "status"), rows=True),
    ("ingest", "vad"): Record(("sample_rate", "segments")),
    ("transcribe", "transcript"): Record(("model", "takes")),
    ("faces", "takes"): Record(("take", "file", "status"), rows=True),
    ("audio", "features"): Record(("file", "spec")),
    ("audio", "vad"): Record(("sample_rate", "segments")),
    ("audio", "offsets"): Record(("take",), rows=True),
    ("train", "split"): Record(("frames", "holdout_from_frame", "reference_frame", "base", "base_sha256")),
    ("evaluate", "metrics"): Record(("heldout_from_frame", "metrics", "targets", "verdict")),
    ("voice", "record"): Record(("available", "speech_s")),
}


def missing_keys(declared: Record, obj) -> list[str]:
    """The declared keys `obj` lacks (a list record: lacked by any of its rows)."""
    rows = obj if declared.rows else [obj]
    if declared.rows and not isinstance(obj, list) or not all(isinstance(r, dict) for r in rows):
        return list(declared.keys)
    return sorted({k for r in rows for k in declared.keys if k not in r}, key=declared.keys.index)
