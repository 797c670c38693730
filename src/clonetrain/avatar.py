"""What render needs of a clone, whether it comes from the training workspace or from a package: a loop of
the footage at full resolution, its face crops and crop squares, a reference crop, the generator, the audio
features it hears (audio.model_input.FeatureSpec) and the consent record."""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from clonetrain.errors import ClonetrainError, UpstreamMissingError


@dataclass
class Avatar:
    clone: str
    version: str | None
    frames: np.ndarray     # (L, H, W, 3) the loop at full resolution
    crops: np.ndarray      # (L, S, S, 3) its face crops at the model's size
    squares: np.ndarray    # (L, 3) crop squares (x0, y0, side) in frame pixels
    reference: np.ndarray  # (S, S, 3)
    generator: object      # nn.Module or TorchScript: (faces (B, 6, S, S), audio (B, 1, channels, window)) -> (B, 3, S, S)
    mel: dict              # the FeatureSpec (as a dict) of the audio features the model was trained with
    consent: dict
    model_sha256: str
    fps: int
    path: Path | None = None  # the package folder, when loaded from one (its voice/ lives there)


def loop_indices(usable: np.ndarray, take: np.ndarray, hi: int, frames: int) -> np.ndarray:
    """The longest run of usable frames of one take before `hi`, cut to `frames` frames."""
    best, start = (0, 0), None
    for t in range(hi + 1):
        inside = t < hi and usable[t] and (start is None or take[t] == take[start])
        if inside:
            start = t if start is None else start
            continue
        if start is not None and t - start > best[1] - best[0]:
            best = (start, t)
        start = t if t < hi and usable[t] else None
    a, b = best
    if b - a < 2:
        raise ClonetrainError("the clone has no stretch of usable footage to loop", "add footage facing the camera")
    return np.arange(a, min(b, a + frames))


def ping_pong(n_out: int, length: int) -> np.ndarray:
    """0, 1, ..., L-1, L-2, ..., 1, 0, 1, ...: a loop without a jump cut."""
    period = max(1, 2 * length - 2)
    k = np.arange(n_out) % period
    return np.where(k < length, k, period - k)


def decode_frames(ws, frame_ids: np.ndarray) -> np.ndarray:
    """Full-resolution frames (of one take) from the ingest stage's normalised video."""
    from clonetrain.media import convert

    takes = {t["take"]: t for t in json.loads((ws.stage_dir("ingest") / "takes.json").read_text())}
    take_of = np.load(ws.stage_dir("ingest") / "frames.npz")["take"]
    take = takes[int(take_of[frame_ids[0]])]
    wanted, found, t = {int(i): k for k, i in enumerate(frame_ids)}, {}, take["first_frame"]
    last = int(frame_ids.max())
    for batch in convert.iter_frames(ws.stage_dir("ingest") / take["video"], take["width"], take["height"]):
        for f in batch:
            if t in wanted:
                found[wanted[t]] = f.copy()
            t += 1
        if t > last:
            break
    return np.stack([found[k] for k in range(len(frame_ids))])


def from_workspace(cfg, ws) -> Avatar:
    from clonetrain.manifest import sha256_file
    from clonetrain.models import checkpoint
    from clonetrain.training.data import load_clip

    model_path = ws.stage_dir("train") / "model.safetensors"
    if not model_path.is_file():
        raise UpstreamMissingError(f"clone {ws.clone!r} has no trained model",
                                   f"run: python -m clonetrain stage=all clone={ws.clone}")
    generator, _, _ = checkpoint.load(model_path)
    clip = load_clip(ws, generator.spec.image_size, generator.spec)
    split = json.loads((ws.stage_dir("train") / "split.json").read_text())
    loop = loop_indices(clip.usable, clip.take, split["holdout_from_frame"], int(cfg.render.loop_seconds * clip.fps))
    squares = np.load(ws.stage_dir("faces") / "faces.npz")["square"][loop]
    return Avatar(clone=ws.clone, version=None, frames=decode_frames(ws, loop), crops=np.asarray(clip.faces[loop]),
                  squares=squares, reference=np.asarray(clip.faces[split["reference_frame"]]), generator=generator,
                  mel=clip.features.to_dict(),
                  consent=json.loads((ws.stage_dir("ingest") / "consent.json").read_text()),
                  model_sha256=sha256_file(model_path), fps=clip.fps)


def from_package(path: Path) -> Avatar:
    import cv2

    from clonetrain import package
    from clonetrain.media import convert

    pkg = package.load(path)
    m = pkg.manifest
    av = pkg.path / "avatar"
    w, h = m["avatar"]["size"]
    frames = np.concatenate(list(convert.iter_frames(av / "idle_loop.mp4", w, h)))
    crops = np.load(av / "idle_crops.npy")
    reference = cv2.cvtColor(cv2.imread(str(av / "reference.png")), cv2.COLOR_BGR2RGB)
    n = min(len(frames), len(crops))
    return Avatar(clone=pkg.clone, version=pkg.version, frames=frames[:n], crops=crops[:n],
                  squares=np.load(av / "idle_squares.npy")[:n], reference=reference, generator=pkg.generator(),
                  mel=m["audio"], consent=pkg.consent, model_sha256=m["files"]["model.safetensors"]["sha256"],
                  fps=m["avatar"]["fps"], path=pkg.path)
