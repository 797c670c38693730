"""Drivers for the cross-speaker evaluation: real takes of *other* people, prepared once and cached.

A clone in production is driven by someone else's voice (TTS, a voice actor), so evaluate drives it with the
sound of real takes of other people and compares the generated mouth with the mouth of the person who really
spoke. Each driver is a video (its own sound, or a separate sound file) turned into:

  audio.wav    its sound at 16 kHz, loudness-normalised as ingest does, moved by its own audio-video offset
               (measured on the real take with audio_analysis.sync, as the audio stage does) so that frame k's sound is
               the sound the real mouth of frame k made
  driver.npz   per video frame: the judge's 68 points (at metrics.JUDGE_SIZE) on the real face, the real mouth
               opening, whether the judge found the face, whether the frame lies in speech (Silero VAD on the
               aligned sound), the voice-band energy
  crops.npy    the real face crops at the model's size (the contact sheet shows them)
  driver.json  where it came from (hashes), the offset found and the one applied (see PLAUSIBLE_OFFSET), counts

The folder is <cache>/<key>/ where the key hashes the files, every setting used and the code, so it is made
once per driver and reused by every clone, and remade when anything it depends on changes. It is built in a
temporary folder and renamed into place: a killed run never leaves a half driver that looks done.

Entries of evaluate.drivers are "VIDEO" or "VIDEO+AUDIO" (a picture and its sound as separate files), relative
to evaluate.footage_dir unless absolute.
"""

from __future__ import annotations

import json
import logging
import os
import shutil
import tempfile
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import soundfile as sf

from clonetrain.audio_analysis import features, sync, vad
from clonetrain.contract.build import build
from clonetrain.core.errors import ClonetrainError
from clonetrain.evaluation import metrics
from clonetrain.core.manifest import code_hash, digest, import_closure, sha256_file
from clonetrain.media import convert
from clonetrain.vision import crops, geometry, tracking
from clonetrain.vision.landmarks import Landmarker
from clonetrain.core.workspace import write_json_atomic

log = logging.getLogger(__name__)

# A prepared driver's folder in the drivers' cache (its own layout, not a stage's): sound, arrays, description.
SOUND = "audio.wav"


# Real takes are often off by 1-4 frames. A driver's offset is applied when its peak is clear (what the audio
# stage asks before correcting a clone's footage) or, on a short take where it rarely is, when it lies within this
# range; an unclear estimate further out is more likely a ripple of the speech rhythm than the offset.
PLAUSIBLE_OFFSET = 4


class DriverError(ClonetrainError):
    """A configured driver cannot be used (missing file, no sound, no face)."""


@dataclass(frozen=True)
class DriverSpec:
    name: str
    video: Path
    audio: Path | None  # None: the video's own sound


@dataclass
class Driver:
    spec: DriverSpec
    folder: Path
    fps: int
    sample_rate: int
    wav: np.ndarray          # aligned sound, len == frames * sample_rate / fps
    points: np.ndarray       # (n, 68, 2) the judge's points on the real face (NaN: none found)
    mouth_open: np.ndarray   # (n,) real mouth opening (NaN: no face)
    speech: np.ndarray       # (n,) bool
    energy: np.ndarray       # (n,)
    info: dict               # driver.json

    @property
    def n(self) -> int:
        return len(self.mouth_open)

    @property
    def valid(self) -> np.ndarray:
        return np.isfinite(self.mouth_open)

    def crops(self) -> np.ndarray:
        return np.load(self.folder / "crops.npy", mmap_mode="r")


def parse(entries: list[str], footage_dir: Path) -> list[DriverSpec]:
    """evaluate.drivers entries -> specs; relative paths are taken from `footage_dir`."""
    out = []
    for entry in entries:
        video, _, audio = str(entry).partition("+")
        v = Path(video).expanduser()
        v = v if v.is_absolute() else footage_dir / v
        a = None
        if audio:
            a = Path(audio).expanduser()
            a = a if a.is_absolute() else footage_dir / a
        out.append(DriverSpec(name=v.stem, video=v, audio=a))
    return out


def _speech_mask(segments: list[tuple[float, float]], n: int, fps: int) -> np.ndarray:
    centres = (np.arange(n) + 0.5) / fps
    mask = np.zeros(n, bool)
    for s, e in segments:
        mask |= (centres >= s) & (centres < e)
    return mask


def key(spec: DriverSpec, settings: dict) -> str:
    """The cache key: the files' contents, every setting the preparation uses and its code."""
    for p in (spec.video, spec.audio):
        if p is not None and not p.is_file():
            raise DriverError(f"driver file {p} does not exist",
                              "fix evaluate.drivers / evaluate.footage_dir, or leave the driver out")
    return digest({"video": sha256_file(spec.video), "audio": sha256_file(spec.audio) if spec.audio else None,
                   "settings": settings, "code": code_hash(import_closure(__name__))})[:16]


def load(folder: Path, spec: DriverSpec) -> Driver:
    info = json.loads((folder / "driver.json").read_text())
    wav, sr = sf.read(folder / SOUND, dtype="float32")
    with np.load(folder / "driver.npz") as z:
        return Driver(spec=spec, folder=folder, fps=info["fps"], sample_rate=sr, wav=wav, points=z["points"],
                      mouth_open=z["mouth_open"], speech=z["speech"], energy=z["energy"], info=info)


def prepare(spec: DriverSpec, settings: dict, cache: Path, landmarker: Landmarker) -> Driver:
    """The prepared driver, from the cache when it is there. `settings` (all JSON-able): fps, sample_rate,
    max_side, crf, loudness_lufs, detector (the faces stage's node, built by contract.build), crop_scale,
    smooth_window, max_gap, image_size, judge, max_offset_frames, mouth_lead_frames, min_sync_correlation,
    min_peak_margin. `landmarker` is the judge."""
    folder = cache / key(spec, settings)
    if (folder / "driver.json").is_file():
        return load(folder, spec)
    cache.mkdir(parents=True, exist_ok=True)
    build = Path(tempfile.mkdtemp(prefix=f".{folder.name}.", dir=cache))
    try:
        build.chmod(0o755)  # mkdtemp's 0700 would keep the shared cache from other users of the data root
        _build(spec, settings, landmarker, build)
        try:
            os.replace(build, folder)
        except OSError:  # another run prepared it meanwhile: theirs is as good as ours
            shutil.rmtree(build, ignore_errors=True)
    except BaseException:
        shutil.rmtree(build, ignore_errors=True)
        raise
    return load(folder, spec)


def _build(spec: DriverSpec, s: dict, landmarker: Landmarker, out: Path) -> None:
    fps, sr, size = int(s["fps"]), int(s["sample_rate"]), int(s["image_size"])
    spf = sr // fps
    video = out / "video.mp4"
    convert.normalise_video(spec.video, video, fps, s["max_side"], s["crf"])
    n, w, h = convert.count_frames(video)
    try:
        wav = convert.decode_audio(spec.audio or spec.video, sr, s["loudness_lufs"])
    except ClonetrainError:
        raise DriverError(f"driver {spec.name}: no sound could be read from {(spec.audio or spec.video).name}",
                          "give its sound as VIDEO+AUDIO in evaluate.drivers") from None
    if wav.size < sr:
        raise DriverError(f"driver {spec.name} has under a second of sound", "give a take of someone speaking")
    wav = np.pad(wav, (0, max(0, n * spf - len(wav))))[: n * spf]

    # Faces as the faces stage finds them: the main speaker, boxes smoothed, square crops.
    detector = build(s["detector"], "faces.detector")
    try:
        dets = [detector.detect(f) for batch in convert.iter_frames(video, w, h) for f in batch]
    finally:
        detector.close()
    dets = (dets + [[]] * n)[:n]
    main = tracking.main_track(dets)
    raw = np.array([m.box if m is not None else [np.nan] * 4 for m in main], np.float32)
    boxes, has_box = tracking.smooth_boxes(raw, np.array([m is not None for m in main]), s["smooth_window"],
                                           s["max_gap"])
    if has_box.mean() < 0.5:
        raise DriverError(f"driver {spec.name}: a face in only {100 * has_box.mean():.0f}% of its frames",
                          "use a take facing the camera")
    faces = np.lib.format.open_memmap(out / "crops.npy", "w+", np.uint8, (n, size, size, 3))
    t = 0
    for batch in convert.iter_frames(video, w, h):
        for rgb in batch:
            if t < n and has_box[t]:
                faces[t] = crops.cut(rgb, crops.crop_box(boxes[t], s["crop_scale"]), size)
            t += 1
    faces.flush()
    video.unlink()

    # The real mouth, measured by the judge exactly as it measures generated and held-out frames.
    idx = np.flatnonzero(has_box)
    runs = np.split(np.arange(idx.size), np.flatnonzero(np.diff(idx) != 1) + 1)  # positions in idx
    points = np.full((n, 68, 2), np.nan, np.float32)
    points[idx] = metrics.judge_landmarks(landmarker, np.asarray(faces[idx]), runs)
    del faces
    mouth = geometry.mouth_opening(points).astype(np.float64)
    valid = np.isfinite(mouth)

    # Align the sound to the picture at the take's own offset (see audio_analysis.sync for the sign).
    energy = features.frame_energy(wav, sr, fps, n)
    est = sync.estimate_offset(mouth, energy, valid, s["max_offset_frames"])
    offset = est.frames - s["mouth_lead_frames"]
    margin = est.margin()
    clear = bool(np.isfinite(est.frames) and est.peak >= s["min_sync_correlation"]
                 and np.isfinite(margin) and margin >= s["min_peak_margin"])
    applied = bool(np.isfinite(offset) and (clear or abs(offset) <= PLAUSIBLE_OFFSET + 0.5))
    shift = int(round(offset)) if applied else 0
    if shift:
        wav = sync.shift_audio(wav, shift, spf)
        energy = features.frame_energy(wav, sr, fps, n)
    speech = _speech_mask(vad.speech_segments(wav, sr), n, fps)

    sf.write(out / SOUND, wav, sr, subtype="FLOAT")
    np.savez(out / "driver.npz", points=points, mouth_open=mouth, speech=speech, energy=energy)
    write_json_atomic(out / "driver.json", {
        "name": spec.name, "video": str(spec.video), "audio": str(spec.audio) if spec.audio else None,
        "video_sha256": sha256_file(spec.video), "audio_sha256": sha256_file(spec.audio) if spec.audio else None,
        "fps": fps, "frames": n, "frames_with_face": int(has_box.sum()), "frames_judged": int(valid.sum()),
        "speech_frames": int(speech.sum()),
        # measured: the sound's lag behind the picture beyond the natural mouth lead (frames); applied: the whole
        # frames the sound was moved by (0 when the offset's peak was not clear enough to act on)
        "offset_frames": round(float(offset), 2) if np.isfinite(offset) else None,
        "offset_peak_corr": round(est.peak, 3) if np.isfinite(est.peak) else None,
        "offset_peak_margin": round(margin, 3) if np.isfinite(margin) else None,
        "offset_clear": clear, "offset_applied": applied, "offset_applied_frames": shift, "settings": s,
    })
    log.info("driver %s prepared: %d frames, offset %+.2f frames (%s)", spec.name, n, offset,
             f"applied {shift:+d}" if applied else "unclear and implausible, not applied")
