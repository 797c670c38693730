"""render: the streamer speaking new audio. Not a cached stage: each call renders.

    python -m clonetrain stage=render clone=anna audio=speech.wav [render.out=out.mp4]

The clone's footage is looped back and forth (a stretch of up to render.loop_seconds of usable frames), the
generated lower face is pasted into every frame through a soft mask at the original resolution, the sound is
muxed in, a visible "AI-generated" label is burnt into every frame and the provenance (clone, model hash,
consent hash, time) is written into the container metadata and a JSON beside the video. Neither the label nor
the provenance can be turned off.
"""

from __future__ import annotations

import json
import logging
import math
from datetime import date, datetime, timezone
from pathlib import Path

import numpy as np
from omegaconf import DictConfig

from clonetrain import __version__
from clonetrain.audio import features
from clonetrain.errors import ClonetrainError, ConsentError, FootageError, UpstreamMissingError
from clonetrain.manifest import sha256_file
from clonetrain.media import convert
from clonetrain.media.label import LABEL, burn_label
from clonetrain.media.paste import paste
from clonetrain.media.write import write_video
from clonetrain.models import checkpoint
from clonetrain.models.inference import generate
from clonetrain.models.lipsync import MEL_WINDOW
from clonetrain.training.data import MEL_CENTER, MEL_SCALE, load_clip
from clonetrain.workspace import Workspace, atomic_path, write_json_atomic

log = logging.getLogger(__name__)


class RenderError(ClonetrainError):
    """The render cannot start: no audio, no model, or consent no longer valid."""


def _read_speech(path_str: str, sr: int) -> tuple[Path, np.ndarray]:
    if not path_str:
        raise RenderError("stage=render needs the speech to say", "add audio=path/to/speech.wav")
    path = Path(path_str).expanduser().resolve()
    if not path.is_file():
        raise RenderError(f"audio file {path} does not exist", "check the path given as audio=")
    try:
        wav = convert.decode_audio(path, sr)
    except FootageError:
        raise RenderError(f"{path.name} is not an audio file ffmpeg can read",
                          "give a WAV, MP3, M4A or a video with a sound track") from None
    if wav.size < sr // 10:
        raise RenderError(f"{path.name} holds no sound (under 0.1 s)", "give a recording of the speech")
    return path, wav


def _check_consent(ws: Workspace, today: date | None = None) -> dict:
    record = json.loads((ws.stage_dir("ingest") / "consent.json").read_text())
    expires = date.fromisoformat(record["expires"])
    if (today or datetime.now(timezone.utc).date()) > expires:
        raise ConsentError(f"the consent of {record['person']} for clone {ws.clone!r} expired on {expires}: "
                           "nothing may be rendered with this clone", "renew the consent record and re-ingest")
    return record


def _loop(clip, hi: int, frames: int) -> np.ndarray:
    """The longest run of usable frames in one take before `hi`, cut to `frames`."""
    ok = clip.usable[:hi]
    best, start = (0, 0), None
    for t in range(len(ok) + 1):
        if t < len(ok) and ok[t] and (start is None or clip.take[t] == clip.take[start]):
            start = t if start is None else start
            continue
        if start is not None and t - start > best[1] - best[0]:
            best = (start, t)
        start = t if t < len(ok) and ok[t] else None
    a, b = best
    if b - a < 2:
        raise RenderError(f"clone {clip.clone!r} has no stretch of usable footage to loop")
    return np.arange(a, min(b, a + frames))


def _ping_pong(n_out: int, length: int) -> np.ndarray:
    period = max(1, 2 * length - 2)
    k = np.arange(n_out) % period
    return np.where(k < length, k, period - k)


def _decode(ws: Workspace, frame_ids: np.ndarray) -> dict[int, np.ndarray]:
    takes = {t["take"]: t for t in json.loads((ws.stage_dir("ingest") / "takes.json").read_text())}
    take_of = np.load(ws.stage_dir("ingest") / "frames.npz")["take"]
    take = takes[int(take_of[frame_ids[0]])]
    wanted, out, t = set(int(i) for i in frame_ids), {}, take["first_frame"]
    for batch in convert.iter_frames(ws.stage_dir("ingest") / take["video"], take["width"], take["height"]):
        for f in batch:
            if t in wanted:
                out[t] = f.copy()
            t += 1
        if t > max(wanted):
            break
    return out


def run(cfg: DictConfig, ws: Workspace) -> Path:
    model_path = ws.stage_dir("train") / "model.safetensors"
    if not model_path.is_file():
        raise UpstreamMissingError(f"clone {ws.clone!r} has no trained model",
                                   f"run: python -m clonetrain stage=all clone={ws.clone}")
    consent = _check_consent(ws)
    a = cfg.audio_features
    sr = cfg.ingest.sample_rate
    audio_path, wav = _read_speech(cfg.audio, sr)
    generator, _, meta = checkpoint.load(model_path)
    clip = load_clip(ws, generator.spec.image_size)
    split = json.loads((ws.stage_dir("train") / "split.json").read_text())
    fps = clip.fps
    mel = (features.log_mel(wav, sr, a.n_fft, a.hop_length, a.win_length, a.n_mels, a.fmin, a.fmax) - MEL_CENTER) / MEL_SCALE
    mel_per_frame = sr / a.hop_length / fps
    n_out = math.ceil(len(wav) / (sr / fps))

    loop = _loop(clip, split["holdout_from_frame"], int(cfg.render.loop_seconds * fps))
    sequence = loop[_ping_pong(n_out, len(loop))]
    frames = _decode(ws, loop)
    squares = np.load(ws.stage_dir("faces") / "faces.npz")["square"]
    reference = np.asarray(clip.faces[split["reference_frame"]])
    h, w = frames[int(loop[0])].shape[:2]

    def mel_window(k: int) -> np.ndarray:
        start = int(round((k + 0.5) * mel_per_frame - MEL_WINDOW / 2))
        start = min(max(start, 0), max(len(mel) - MEL_WINDOW, 0))
        win = mel[start : start + MEL_WINDOW]
        return np.pad(win, ((0, MEL_WINDOW - len(win)), (0, 0)), mode="edge").T

    def rendered():
        bs = cfg.render.batch_size
        for i in range(0, n_out, bs):
            ids = sequence[i : i + bs]
            faces = generate(generator, reference, np.asarray(clip.faces[ids]),
                             np.stack([mel_window(k) for k in range(i, i + len(ids))]), bs)
            for src, face in zip(ids, faces):
                yield burn_label(paste(frames[int(src)], face, squares[src]))

    created = datetime.now(timezone.utc).isoformat(timespec="seconds")
    provenance = {
        "label": LABEL, "ai_generated": True, "generator": f"clonetrain {__version__}", "clone": ws.clone,
        "model_sha256": sha256_file(model_path), "consent_sha256": consent["sha256"],
        "permitted_uses": consent["permitted_uses"], "audio_sha256": sha256_file(audio_path), "created": created,
    }
    out = Path(cfg.render.out).expanduser() if cfg.render.out else ws.root / "renders" / ws.clone / f"{audio_path.stem}.mp4"
    with atomic_path(out) as tmp:
        write_video(rendered(), (w, h), fps, tmp, audio=audio_path,
                    metadata={"comment": json.dumps(provenance), "description": f"{LABEL} video of clone {ws.clone}",
                              "title": f"{LABEL}: {ws.clone}"})
    write_json_atomic(out.with_suffix(".provenance.json"), {**provenance, "video_sha256": sha256_file(out),
                                                            "frames": n_out, "fps": fps, "size": [w, h]})
    log.info("rendered %s: %d frames (%.1f s) at %dx%d, labelled %r", out, n_out, n_out / fps, w, h, LABEL)
    return out
