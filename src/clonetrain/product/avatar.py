"""What render needs of a clone, whether it comes from the training workspace or from a package: the clone's
footage (frame by frame, at full resolution, never all in memory), its crop squares, its motion library, a
reference crop, the generator, the audio features it hears (audio_analysis.model_input.FeatureSpec) and the consent
record."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np

from clonetrain.evaluation import verdict
from clonetrain.contract import files
from clonetrain.core.errors import ClonetrainError, UpstreamMissingError
from clonetrain.media.frames import FrameStore, Video
from clonetrain.models import checkpoint, mouth_control
from clonetrain.motion import library, plan as motion_plan
from clonetrain.product import clone_package
from clonetrain.vision import crops as crops_mod
from clonetrain.vision.mouth_texture import MouthBank, MouthTexture, from_cfg as texture_from_cfg


@dataclass
class Avatar:
    clone: str
    version: str | None
    frames: FrameStore     # the footage the clone is shown with, by pool index
    squares: np.ndarray    # (N, 3) crop squares (x0, y0, side) in frame pixels
    crops: np.ndarray | None  # (N, S, S, 3) model-size face crops, or None: cut from the frames
    pool: library.Pool | None  # the motion library; None for a package made before it had one (a loop)
    reference: np.ndarray  # (S, S, 3)
    generator: object      # nn.Module or TorchScript: (faces (B, 6, S, S), audio (B, 1, channels, window)) -> (B, 3, S, S)
    mel: dict              # the FeatureSpec (as a dict) of the audio features the model was trained with
    consent: dict
    model_sha256: str
    fps: int
    verdict: dict | None = None  # the evaluated clone's verdict (clonetrain.evaluation.verdict); None if never evaluated
    package_dir: Path | None = None  # the package folder, when loaded from one (its voice/ lives there)
    # The training frames the mouth and its fine detail are taken from (vision.mouth_texture); None for a package
    # made before it had them (the generator's mouth as it is).
    mouth_bank: MouthBank | None = None
    # what render and the live session add from the bank: from_workspace sets it from the config's mouth_texture,
    # render.source for a package
    texture: MouthTexture | None = None
    # The model's mouth control as numbers (models.mouth_control.predictor): which opening the sound asks for,
    # which steers the texture's choice of source; None for a model without one.
    control: object = None

    def crop(self, i: int, frame: np.ndarray) -> np.ndarray:
        if self.crops is not None:
            return np.asarray(self.crops[i])
        return crops_mod.cut(frame, self.squares[i], self.reference.shape[0])

    def detail(self, faces: np.ndarray, consecutive: int, windows: np.ndarray) -> np.ndarray:
        """Generated faces with the person's own mouth (vision.mouth_texture): the first `consecutive` are
        output frames in order, the rest frames beside them (the frames cuts fade from); `windows`: the sound
        each face was generated from."""
        if self.texture is None:
            return faces
        n = consecutive
        return np.concatenate([self.texture(faces[:n], windows=windows[:n]),
                               self.texture(faces[n:], follow=False, windows=windows[n:])])

    def path(self, speech: np.ndarray, cfg: motion_plan.PlanCfg) -> motion_plan.Path:
        """Which footage frame to show under each output frame (`speech`: per output frame, voice or not)."""
        if self.pool is None:
            frames = ping_pong(len(speech), len(self.frames))
            none = np.full(len(speech), -1, np.int64)
            return motion_plan.Path(frames=frames, blend_from=none, blend_weight=np.zeros(len(speech), np.float32))
        return motion_plan.plan(self.pool, motion_plan.wanted_labels(speech, self.fps, cfg), cfg)


def footage_frames(usable: np.ndarray, take: np.ndarray, sizes: dict[int, tuple[int, int]], hi: int,
                   max_frames: int = 0) -> np.ndarray:
    """The frames the clone is shown with: its usable training frames (before `hi`, the held-out part), of the
    takes that share the most used frame size (a render has one size), the first `max_frames` of them if set."""
    ids = np.flatnonzero(usable[:hi])
    if ids.size < 2:
        raise ClonetrainError("the clone has no usable footage to show", "add footage facing the camera")
    size_of = np.array([sizes[int(t)] for t in take[ids]])
    values, counts = np.unique(size_of, axis=0, return_counts=True)
    keep = np.all(size_of == values[np.argmax(counts)], axis=1)
    ids = ids[keep]
    return ids[:max_frames] if max_frames else ids


def mouth_bank(clip, hi: int, max_frames: int, full=None) -> MouthBank:
    """The bank of the clone's own mouths: its usable frames before `hi` (the held-out part is never in it, so
    the evaluation measures detail taken from frames the clone was trained on, as a render does). `full`: every
    frame's full-size crop (full_crops), for the mouth to be painted at that size."""
    ids = np.flatnonzero(clip.usable[:hi])
    if ids.size == 0:
        raise ClonetrainError("the clone has no usable training frames to take mouth detail from",
                              "add footage facing the camera")
    if 0 < max_frames < ids.size:
        ids = ids[np.unique(np.linspace(0, ids.size - 1, max_frames).round().astype(int))]
    return MouthBank.from_crops(clip.faces[ids], clip.mouth_open[ids], None if full is None else full[ids])


def full_crops(ws, node, clip):
    """Every frame's full-size crop (the faces stage's crop_size) when a `mouth_texture` section asks to paint
    at full size and it differs from the model's; else None."""
    size = int(files.read(ws, "faces", "faces").crop_size)
    if not node.full_size or size == clip.faces.shape[1]:
        return None
    return files.load(ws, "faces", "crops", size, mmap_mode="r")


def loop_indices(usable: np.ndarray, take: np.ndarray, hi: int, frames: int) -> np.ndarray:
    """The longest run of usable frames of one take before `hi`, cut to `frames` frames (evaluation's loop)."""
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
    """0, 1, ..., L-1, L-2, ..., 1, 0, 1, ...: evaluation's loop, and packages made before the motion library."""
    period = max(1, 2 * length - 2)
    k = np.arange(n_out) % period
    return np.where(k < length, k, period - k)


def _takes(ws) -> dict[int, dict]:
    return {t["take"]: t for t in files.read_json(ws, "ingest", "takes") if t.get("video")}


def workspace_store(ws, frame_ids: np.ndarray) -> FrameStore:
    """The ingest stage's normalised takes, addressed by position in `frame_ids` (ingest timeline indices)."""
    takes = _takes(ws)
    frames = files.read(ws, "ingest", "frames")
    take_of, fps = frames.take, float(frames.fps)
    order = sorted({int(take_of[i]) for i in frame_ids})
    videos = [Video(files.path(ws, "ingest", "take_video", takes[t]["video"]), takes[t]["width"], takes[t]["height"],
                    fps) for t in order]
    video = np.array([order.index(int(take_of[i])) for i in frame_ids])
    local = np.array([int(i) - takes[int(take_of[i])]["first_frame"] for i in frame_ids])
    return FrameStore(videos, video, local)


def footage_pool(ws, frame_ids: np.ndarray, fps: int) -> library.Pool:
    lm = files.read(ws, "landmarks", "landmarks")
    return library.build_pool(frame_ids, files.read(ws, "ingest", "frames").take, lm.pose, lm.points_frame,
                              files.load(ws, "audio", "speech"), fps)


def from_workspace(cfg, ws) -> Avatar:
    from clonetrain.core.manifest import sha256_file
    from clonetrain.contract.clip import load_clip

    model_path = files.path(ws, "train", "model", required=False)
    if not model_path.is_file():
        raise UpstreamMissingError(f"clone {ws.clone!r} has no trained model",
                                   f"run: python -m clonetrain stage=all clone={ws.clone}")
    generator, _, _ = checkpoint.load(model_path)
    clip = load_clip(ws, generator.spec.image_size, generator.spec)
    split = files.read_json(ws, "train", "split")
    # The mouth as render and the live session show it (the config's mouth_texture), as evaluate measured it.
    bank = mouth_bank(clip, split["holdout_from_frame"], cfg.mouth_texture.bank_frames,
                      full_crops(ws, cfg.mouth_texture, clip))
    control = mouth_control.predictor(getattr(generator, "mouth", None))
    sizes = {t: (v["width"], v["height"]) for t, v in _takes(ws).items()}
    ids = footage_frames(clip.usable, clip.take, sizes, split["holdout_from_frame"],
                         int(cfg.render.footage_seconds * clip.fps))
    return Avatar(clone=ws.clone, version=None, frames=workspace_store(ws, ids),
                  squares=files.read(ws, "faces", "faces").square[ids], crops=clip.faces[ids],
                  pool=footage_pool(ws, ids, clip.fps), reference=np.asarray(clip.faces[split["reference_frame"]]),
                  generator=generator, mel=clip.features.to_dict(),
                  consent=files.read_json(ws, "ingest", "consent"),
                  model_sha256=sha256_file(model_path), fps=clip.fps,
                  verdict=verdict.read(files.folder(ws, "evaluate")) if files.manifest(ws, "evaluate") else None,
                  mouth_bank=bank, texture=texture_from_cfg(bank, cfg.mouth_texture, control), control=control)


def from_package(pkg) -> Avatar:
    """Everything render needs from an opened, verified package (clonetrain.product.clone_package.Package). The footage is read
    from the package folder frame by frame as the render goes: keep the package open until it is done."""
    import cv2


    m = pkg.manifest
    av = pkg.path / "avatar"
    w, h = m["avatar"]["size"]
    fps = m["avatar"]["fps"]
    reference = cv2.cvtColor(cv2.imread(str(av / "reference.png")), cv2.COLOR_BGR2RGB)
    common = dict(clone=pkg.clone, version=pkg.version, reference=reference, generator=pkg.generator(),
                  mel=m["audio"], consent=pkg.consent, model_sha256=m["files"][clone_package.MODEL]["sha256"], fps=fps,
                  verdict=verdict.read(pkg.path), package_dir=pkg.path,
                  mouth_bank=MouthBank.load(av / "mouth_bank.npz") if (av / "mouth_bank.npz").is_file() else None,
                  control=mouth_control.predictor(checkpoint.load_mouth_control(pkg.path / clone_package.MODEL)))
    if (av / "footage.npz").is_file():
        arrays = np.load(av / "footage.npz")
        n = len(arrays["square"])
        store = FrameStore([Video(av / "footage.mp4", w, h, fps)], np.zeros(n, np.int64), np.arange(n))
        return Avatar(frames=store, squares=arrays["square"], crops=None, pool=library.Pool.from_arrays(arrays),
                      **common)
    # A package from before the motion library: its idle loop, played back and forth.
    crops = np.load(av / "idle_crops.npy")
    store = FrameStore([Video(av / "idle_loop.mp4", w, h, fps)], np.zeros(len(crops), np.int64), np.arange(len(crops)))
    return Avatar(frames=store, squares=np.load(av / "idle_squares.npy"), crops=crops, pool=None, **common)
