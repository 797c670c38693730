"""faces: find the main speaker's face in every frame and write square crops.

Reads  ingest/takes/*.mp4, ingest/takes.json, ingest/frames.npz
Writes crops_<crop_size>.npy   (N, S, S, 3) uint8, one per ingest frame (zeros where there is no face)
       crops_<train_size>.npy  the same at the training size
       faces.npz               per frame: box (smoothed), raw_box, square (x0, y0, side), score, flags,
                               sharpness, profile, n_faces
       takes.json              per take: frames with a face, flag counts, status and reason

Frame indices stay dense: a frame without a face is flagged, never dropped.

    python -m clonetrain stage=faces clone=anna faces.crop_scale=1.8
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
from omegaconf import DictConfig

from clonetrain.contract import files
from clonetrain.contract.contents import Faces
from clonetrain.contract.build import build
from clonetrain.contract.faces import (BLURRED, INTERPOLATED, NO_FACE, PROFILE, SEVERAL_FACES, TOO_SMALL, UNUSABLE,
                                       describe_flags)
from clonetrain.core.errors import FootageError
from clonetrain.core.manifest import StageResult
from clonetrain.core.progress import Progress
from clonetrain.media import convert
from clonetrain.vision import crops, tracking
from clonetrain.vision.detector import FaceDetector
from clonetrain.core.workspace import Workspace


def _detect_take(detector: FaceDetector, video: Path, width: int, height: int, batch: int, desc: str,
                 total: int, every_s: float):
    per_frame = []
    with Progress(desc, total, "frames", every_s) as progress:
        for frames in convert.iter_frames(video, width, height, batch):
            per_frame.extend(detector.detect(f) for f in frames)
            progress.update(len(frames))
    return per_frame


def run(cfg: DictConfig, ws: Workspace, out_dir: Path) -> StageResult:
    c = cfg.faces
    takes = [t for t in files.read_json(ws, "ingest", "takes") if t["status"] == "ok"]
    n = int(files.read(ws, "ingest", "frames").take.shape[0])
    big = np.lib.format.open_memmap(files.output(out_dir, "faces", "crops", c.crop_size), "w+", np.uint8, (n, c.crop_size, c.crop_size, 3))
    small = np.lib.format.open_memmap(files.output(out_dir, "faces", "crops", c.train_size), "w+", np.uint8, (n, c.train_size, c.train_size, 3))
    box = np.full((n, 4), np.nan, np.float32)
    raw_box = np.full((n, 4), np.nan, np.float32)
    square = np.full((n, 3), np.nan, np.float32)
    score = np.zeros(n, np.float32)
    flags = np.zeros(n, np.uint8)
    sharp = np.zeros(n, np.float32)
    profile = np.full(n, np.nan, np.float32)
    n_faces = np.zeros(n, np.uint8)

    result = StageResult()
    take_rows = []
    detector = build(c.detector, "faces.detector")
    try:
        for take in takes:
            video, first, count = files.path(ws, "ingest", "take_video", take["video"]), take["first_frame"], take["frames"]
            sl = slice(first, first + count)
            dets = _detect_take(detector, video, take["width"], take["height"], c.batch_size, f"faces {take['file']}",
                               take["frames"], cfg.progress_every_s)
            dets = (dets + [[]] * count)[:count]  # a decoder may return a frame more or less than counted
            main = tracking.main_track(dets)
            n_faces[sl] = [min(len(d), 255) for d in dets]
            valid = np.array([m is not None for m in main])
            raw = np.array([m.box if m is not None else [np.nan] * 4 for m in main], np.float32)
            smooth, has_box = tracking.smooth_boxes(raw, valid, c.smooth_window, c.max_gap)
            raw_box[sl], box[sl] = raw, smooth
            score[sl] = [m.score if m is not None else 0.0 for m in main]
            profile[sl] = [crops.profile_ratio(m.keypoints) if m is not None else np.nan for m in main]
            f = np.zeros(count, np.uint8)
            f[~has_box] |= NO_FACE
            f[has_box & ~valid] |= INTERPOLATED
            f[n_faces[sl] > 1] |= SEVERAL_FACES
            side = np.nan_to_num(np.maximum(smooth[:, 2] - smooth[:, 0], smooth[:, 3] - smooth[:, 1]))
            f[has_box & (side < c.min_face_px)] |= TOO_SMALL
            f[np.nan_to_num(profile[sl]) > c.profile_threshold] |= PROFILE

            # Second pass at full resolution: crops need the smoothed boxes, which need the whole take.
            t = first
            for frames in convert.iter_frames(video, take["width"], take["height"], c.batch_size):
                for rgb in frames:
                    if t >= first + count:
                        break
                    if has_box[t - first]:
                        sq = crops.crop_box(smooth[t - first], c.crop_scale)
                        square[t] = sq
                        big[t] = crops.cut(rgb, sq, c.crop_size)
                        small[t] = crops.cut(rgb, sq, c.train_size)
                        sharp[t] = crops.sharpness(big[t])
                    t += 1
            f[has_box & (sharp[sl] < c.blur_threshold)] |= BLURRED
            flags[sl] = f

            unusable = float(np.mean((f & UNUSABLE) != 0))
            row = {"take": take["take"], "file": take["file"], "frames": count,
                   "with_face": int(np.count_nonzero(has_box)), "flags": describe_flags(f), "status": "ok"}
            if unusable > c.max_no_face_ratio:
                shares = {"no face": float(np.mean(~has_box)), "face too small": float(np.mean((f & TOO_SMALL) != 0))}
                reason = "; ".join(f"{name} in {100 * v:.0f}% of frames" for name, v in shares.items() if v >= 0.01)
                row.update(status="rejected", reason=reason)
                flags[sl] |= NO_FACE  # keep the trainer off the whole take
                result.warnings.append(f"{take['file']} left out: {reason} (limit {100 * c.max_no_face_ratio:.0f}%)")
            else:
                for name, k in row["flags"].items():
                    if k and name != "box interpolated" and k / count >= 0.05:
                        result.warnings.append(f"{take['file']}: {name} in {100 * k / count:.0f}% of frames")
            take_rows.append(row)
    finally:
        detector.close()
    big.flush()
    small.flush()
    del big, small

    if not any(r["status"] == "ok" for r in take_rows):
        raise FootageError(", ".join(r["file"] for r in take_rows),
                           "no take has a usable face: " + "; ".join(f"{r['file']}: {r['reason']}" for r in take_rows),
                           "film the person facing the camera, face filling at least a fifth of the frame",
                           code="no_face")

    files.write(out_dir, "faces", "faces", Faces(box=box, raw_box=raw_box, square=square, score=score, flags=flags,
                                                 sharpness=sharp, profile=profile, n_faces=n_faces,
                                                 crop_size=np.array(c.crop_size), train_size=np.array(c.train_size)))
    files.write_record(out_dir, "faces", "takes", take_rows)
    usable = int(np.count_nonzero((flags & UNUSABLE) == 0))
    result.counts = {"frames": n, "usable_frames": usable, **describe_flags(flags)}
    med = np.nanmedian(np.maximum(box[:, 2] - box[:, 0], box[:, 3] - box[:, 1])) if usable else 0.0
    result.summary = [f"{usable}/{n} frames with a usable face ({100 * usable / max(n, 1):.0f}%), "
                      f"median face {med:.0f} px, crops {c.crop_size} px and {c.train_size} px"]
    result.summary += [f"{r['file']}: {r['with_face']}/{r['frames']} frames with a face"
                       + ("" if r["status"] == "ok" else f" - LEFT OUT: {r['reason']}") for r in take_rows]
    return result
