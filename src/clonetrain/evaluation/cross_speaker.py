"""Cross-speaker evaluation: the clone driven by other people's real speech, judged against their real mouths.

For each driver (evaluation.drivers: a real take of someone else, its sound aligned at its own offset) the clone
speaks the driver's sound over frames of its own held-out footage (looped back and forth, as render loops), and
the judge's landmarks on the generated face are compared frame by frame with those on the driver's real face:

  mouth_r     Pearson r of the generated and the real mouth opening (inner-lip gap over eye distance)
  lmd         scale-normalised mouth LMD: both mouths' 20 points about their own centre, in eye distances, less
              each face's mean mouth shape over the driver, so two different people's lips are compared by how
              they move rather than by their anatomy; mean distance per point
  silence_closed_fraction
              in the driver's pauses (VAD; frames at least `pause_margin` frames from speech, because a mouth opens
              before the sound and closes after it), the share of frames whose generated opening stays within
              the clone's own closed-mouth range: at most the `closed_percentile` percentile of the openings the
              judge measures on the clone's own training footage during its own pauses
  sync_offset_frames, sync_peak_corr, sync_peak_margin
              does the mouth open on the driver's syllables: the project's offset estimate (audio_analysis.sync: mouth
              changes against voice-band energy changes) between the generated mouth and the driver's sound,
              relative to the natural mouth lead. A mouth that opens on the loud syllables has a clear peak
              near 0; one that ignores the sound has none. (The level of the energy is a poor guide: a real mouth
              opens a few frames before the energy peaks, and VAD pauses are few and often breaths.)

The static frame (the clone's footage with the reference's lower face: a mouth that never moves) is judged the
same way beside it; its r is about 0 here, since nothing in it follows the driver.
"""

from __future__ import annotations

import functools

import numpy as np

from clonetrain.product import avatar
from clonetrain.audio_analysis import sync
from clonetrain.core.errors import ClonetrainError
from clonetrain.evaluation import metrics
from clonetrain.evaluation.drivers import Driver
from clonetrain.vision.mouth_texture import MouthTexture
from clonetrain.models.inference import generate, live_speech_windows, speech_windows
from clonetrain.vision import geometry
from clonetrain.vision.landmarks import Landmarker

def mouth_motion(points: np.ndarray) -> np.ndarray:
    """(n, 68, 2) -> (n, 20, 2): the mouth about its centre, in eye distances, less its mean over the frames."""
    mouth = points[:, metrics.MOUTH]
    with np.errstate(invalid="ignore", divide="ignore"):
        shape = (mouth - mouth.mean(1, keepdims=True)) / geometry.face_scale(points)[:, None, None]
    ok = np.isfinite(shape).all(axis=(1, 2))
    return shape - (shape[ok].mean(0) if ok.any() else 0.0)


def motion_lmd(gen: np.ndarray, real: np.ndarray) -> np.ndarray:
    """(n,) per-frame scale-normalised mouth LMD (see the module docstring); NaN where either face is missing."""
    return np.linalg.norm(mouth_motion(gen) - mouth_motion(real), axis=-1).mean(-1).astype(np.float64)


def pause_frames(speech: np.ndarray, margin: int) -> np.ndarray:
    """Frames outside speech and at least `margin` frames from any speech frame."""
    near = speech.copy()
    for k in range(1, margin + 1):
        near[k:] |= speech[:-k]
        near[:-k] |= speech[k:]
    return ~near


def closed_mouth_max(openings: np.ndarray, percentile: float) -> float:
    """The top of the clone's closed-mouth range: a percentile of its openings during its own pauses."""
    openings = openings[np.isfinite(openings)]
    return float(np.percentile(openings, percentile)) if openings.size else float("nan")


def judge_clone_pauses(landmarker: Landmarker, faces: np.ndarray, usable: np.ndarray, speech: np.ndarray, hi: int,
                       margin: int, limit: int = 250) -> tuple[np.ndarray, str]:
    """The judge's mouth opening on (up to `limit`, evenly spread) frames of the clone's training footage [0, hi)
    in its own pauses; when it has fewer than 25 paused frames, on all its usable training frames' lowest fifth.
    Returns (openings, where they came from)."""
    paused = np.flatnonzero(usable[:hi] & pause_frames(speech[:hi], margin))
    source = "pauses"
    if paused.size < 25:
        paused, source = np.flatnonzero(usable[:hi]), "all frames (few pauses): lowest fifth"
    pick = paused[np.linspace(0, paused.size - 1, min(limit, paused.size)).astype(int)] if paused.size else paused
    pick = np.unique(pick)
    runs = np.split(np.arange(pick.size), np.flatnonzero(np.diff(pick) != 1) + 1)
    opening = geometry.mouth_opening(metrics.judge_landmarks(landmarker, np.asarray(faces[pick]), runs))
    if source != "pauses":
        opening = opening[opening <= np.nanpercentile(opening, 20)]
    return opening.astype(np.float64), source


def score(gen_pts: np.ndarray, driver: Driver, closed_max: float, margin: int, lead: float, max_lag: int) -> dict:
    """One method's generated points (n, 68, 2), driven by `driver`, against the driver's real mouth and sound.
    `lead`, `max_lag`: audio_features.mouth_lead_frames and max_offset_frames."""
    return score_opening(geometry.mouth_opening(gen_pts).astype(np.float64), driver, closed_max, margin, lead,
                         max_lag, motion_lmd(gen_pts, driver.points))


def score_opening(gen_open: np.ndarray, driver: Driver, closed_max: float, margin: int, lead: float, max_lag: int,
                  lmd: np.ndarray | None = None) -> dict:
    """The same from the generated mouth opening per frame (and the per-frame LMD when there are points)."""
    judged = np.isfinite(gen_open)
    pauses = pause_frames(driver.speech, margin) & judged
    r = metrics.pearson(gen_open, driver.mouth_open)
    est = sync.estimate_offset(gen_open, driver.energy, judged, max_lag)
    peak, spread = est.peak, est.margin()
    return {
        "mouth_r": round(r, 4) if np.isfinite(r) else None,
        "lmd": round(float(np.nanmean(lmd)), 4) if lmd is not None and np.isfinite(lmd).any() else None,
        "silence_closed_fraction": round(float(np.mean(gen_open[pauses] <= closed_max)), 4)
        if pauses.any() and np.isfinite(closed_max) else None,
        "pause_frames": int(pauses.sum()),
        "sync_offset_frames": round(float(est.frames - lead), 2) if np.isfinite(est.frames) else None,
        "sync_peak_corr": round(peak, 4) if np.isfinite(peak) else None,
        "sync_peak_margin": round(spread, 4) if np.isfinite(spread) else None,
        "judged_frames": int(judged.sum()),
    }


def hearing(name: str, stream):
    """How the drive cuts the model's input from a driver's sound (evaluate.hearing): as render does, or as a live
    stream does, fed in stream.chunk_s chunks and written in batches of stream.batch_size frames (read only then,
    so that the stream's settings rerun no evaluation that does not use them)."""
    if name == "render":
        return speech_windows
    if name == "live":
        return functools.partial(live_speech_windows, chunk_s=stream.chunk_s, batch_size=stream.batch_size)
    raise ClonetrainError(f"unknown evaluate.hearing {name!r}", "use evaluate.hearing=render or live")


def drive(generator, settings: dict, driver: Driver, reference: np.ndarray, loop: np.ndarray,
          batch_size: int, texture: MouthTexture | None = None, hear=speech_windows) -> np.ndarray:
    """The clone's faces (looped back and forth over `loop`, its own footage) speaking the driver's sound, with
    the mouth detail render adds (`texture`, if any). `hear`: how the model's input is cut (hearing())."""
    sequence = avatar.ping_pong(driver.n, len(loop))
    windows = hear(settings, driver.wav, driver.sample_rate, driver.fps, driver.n)
    faces = generate(generator, reference, loop[sequence], windows, batch_size)
    if texture is None:
        return faces
    texture.reset()
    return texture(faces, windows=windows)


def static_faces(loop: np.ndarray, reference: np.ndarray) -> np.ndarray:
    """The loop frames with the reference's lower face: a mouth that never moves."""
    static = loop.copy()
    static[:, loop.shape[1] // 2 :] = reference[loop.shape[1] // 2 :]
    return static


def summarise(per_driver: list[dict]) -> dict:
    """The mean over drivers of each method's r, LMD and sync peak; silence pooled over every driver's pauses."""
    out = {}
    for method in ("clone", "static_frame"):
        rs = [d[method]["mouth_r"] for d in per_driver if d[method]["mouth_r"] is not None]
        lmds = [d[method]["lmd"] for d in per_driver if d[method]["lmd"] is not None]
        peaks = [d[method]["sync_peak_corr"] for d in per_driver if d[method]["sync_peak_corr"] is not None]
        frames = sum(d[method]["pause_frames"] for d in per_driver if d[method]["silence_closed_fraction"] is not None)
        closed = sum(d[method]["silence_closed_fraction"] * d[method]["pause_frames"] for d in per_driver
                     if d[method]["silence_closed_fraction"] is not None)
        out[method] = {"mouth_r": round(float(np.mean(rs)), 4) if rs else None,
                       "lmd": round(float(np.mean(lmds)), 4) if lmds else None,
                       "sync_peak_corr": round(float(np.mean(peaks)), 4) if peaks else None,
                       "silence_closed_fraction": round(closed / frames, 4) if frames else None,
                       "pause_frames": frames, "drivers": len(rs)}
    return out
