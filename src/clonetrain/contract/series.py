"""evaluate/frames.npz: what the judge measured on every held-out frame, per method; evaluate/cross_speaker.npz:
the generated and real mouth opening per frame of each driver.

Written by stages.evaluate; read by evaluation.versus (paired comparisons of two clones on the same frames).
Layout of frames.npz: "frames" (held-out frame numbers), "fps", and per method "<method>/<field>" for each
FrameSeries field; of cross_speaker.npz: "<driver>|clone" and "<driver>|real".
"""

from __future__ import annotations

from dataclasses import dataclass, fields
from pathlib import Path

import numpy as np


@dataclass
class FrameSeries:
    """What the judge measured on each held-out frame; the metrics are summaries of it, and two methods judged on
    the same frames can be compared frame by frame (evaluation.paired)."""

    mouth_open: np.ndarray   # generated mouth opening (NaN: no landmarks)
    lmd: np.ndarray          # mouth landmark distance to the real frame
    psnr: np.ndarray
    ssim: np.ndarray


def write_frame_series(path: Path, frames: np.ndarray, fps: int, series: dict[str, FrameSeries]) -> None:
    """frames.npz: the held-out frame numbers, the frame rate and, per method, what the judge measured on each frame."""
    arrays = {"frames": frames, "fps": np.array(fps)}
    for name, s in series.items():
        arrays.update({f"{name}/{k}": v for k, v in vars(s).items()})
    np.savez(path, **arrays)  # inside the stage's build folder, which is swapped into place whole


def read_frame_series(path: Path) -> tuple[np.ndarray, int, dict[str, FrameSeries]]:
    with np.load(path) as z:
        names = sorted({k.split("/")[0] for k in z.files if "/" in k})
        return z["frames"], int(z["fps"]), {n: FrameSeries(**{f.name: z[f"{n}/{f.name}"] for f in fields(FrameSeries)})
                                            for n in names}


def write_driver_series(path, series: dict[str, tuple[np.ndarray, np.ndarray]]) -> None:
    """Per driver, the clone's generated and the driver's real mouth opening per frame."""
    arrays = {}
    for name, (gen, real) in series.items():
        arrays[f"{name}|clone"], arrays[f"{name}|real"] = np.asarray(gen, np.float64), np.asarray(real, np.float64)
    np.savez(path, **arrays)  # inside the stage's build folder, which is swapped into place whole


def read_driver_series(path) -> dict[str, tuple[np.ndarray, np.ndarray]]:
    with np.load(path) as z:
        names = sorted({k.rsplit("|", 1)[0] for k in z.files})
        return {n: (z[f"{n}|clone"], z[f"{n}|real"]) for n in names}
