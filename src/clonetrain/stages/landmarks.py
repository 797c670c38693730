"""landmarks: 68 iBUG points per frame, smoothed over time; head pose and the mouth-opening series.

Reads  faces/crops_<crop_size>.npy, faces/faces.npz, ingest/frames.npz
Writes landmarks.npz: points (N, 68, 2) in crop pixels, points_frame (N, 68, 2) in take-frame pixels,
       valid (N,), pose (N, 3) yaw/pitch/roll degrees, mouth_open (N,) inner-lip gap / eye distance

    python -m clonetrain stage=landmarks clone=anna landmarks=fan landmarks.fan_weights=/models
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
from omegaconf import DictConfig

from clonetrain.contract import files
from clonetrain.contract.contents import Landmarks
from clonetrain.contract.faces import usable as usable_face
from clonetrain.core.manifest import StageResult
from clonetrain.core.progress import Progress
from clonetrain.vision import geometry
from clonetrain.contract.build import build_landmarker
from clonetrain.core.workspace import Workspace


def run(cfg: DictConfig, ws: Workspace, out_dir: Path) -> StageResult:
    c = cfg.landmarks
    faces = files.read(ws, "faces", "faces")
    crop_size = int(faces.crop_size)
    crops = files.load(ws, "faces", "crops", crop_size, mmap_mode="r")
    take = files.read(ws, "ingest", "frames").take
    usable = usable_face(faces.flags)
    n = len(crops)

    points = np.full((n, 68, 2), np.nan, np.float32)
    landmarker = build_landmarker(c)
    try:
        # Runs of consecutive usable frames of one take: the tracker is reset at every cut.
        cut = np.flatnonzero(np.diff(take) != 0) + 1
        starts = np.flatnonzero(usable & ~np.r_[False, usable[:-1]] | np.isin(np.arange(n), cut) & usable)
        with Progress(f"landmarks ({c.backend})", int(usable.sum()), "frames", cfg.progress_every_s) as bar:
            for s in starts:
                e = s + 1
                while e < n and usable[e] and take[e] == take[s]:
                    e += 1
                landmarker.reset()
                for b in range(s, e, c.batch_size):
                    stop = min(e, b + c.batch_size)
                    points[b:stop] = landmarker(np.asarray(crops[b:stop]))
                    bar.update(stop - b)
    finally:
        landmarker.close()

    valid = ~np.isnan(points).any(axis=(1, 2))
    # Smooth within each take only; a cut between takes is a real jump.
    smoothed = points.copy()
    for t in np.unique(take):
        m = take == t
        smoothed[m] = geometry.smooth_series(points[m].reshape(-1, 136), valid[m], c.smooth_window).reshape(-1, 68, 2)
    sq = faces.square
    to_frame = sq[:, 2:3, None] / crop_size
    points_frame = smoothed * to_frame + sq[:, None, :2]
    pose = geometry.head_pose(smoothed, crop_size)
    mouth = geometry.mouth_opening(smoothed).astype(np.float32)
    files.write(out_dir, "landmarks", "landmarks", Landmarks(points=smoothed, points_frame=points_frame.astype(np.float32),
                                                             valid=valid, pose=pose, mouth_open=mouth,
                                                             crop_size=np.array(crop_size)))

    result = StageResult()
    missed = int(np.count_nonzero(usable & ~valid))
    result.counts = {"frames": n, "with_landmarks": int(valid.sum()), "missed_on_usable_face": missed,
                     "backend": c.backend}
    if missed > 0.05 * max(int(usable.sum()), 1):
        result.warnings.append(f"landmarks missing on {missed} frames that have a face ({c.backend})")
    yaw, pitch, roll = (np.nanpercentile(np.abs(pose[valid, i]), 95) if valid.any() else np.nan for i in range(3))
    result.summary = [
        f"{int(valid.sum())}/{n} frames with 68 landmarks ({c.backend})",
        f"head pose (95th pct of |angle|): yaw {yaw:.0f} deg, pitch {pitch:.0f} deg, roll {roll:.0f} deg",
        f"mouth opening: median {np.nanmedian(mouth):.3f}, 95th pct {np.nanpercentile(mouth, 95):.3f} (eye distances)"
        if valid.any() else "mouth opening: no landmarks",
    ]
    return result
