"""render: the streamer speaking new audio. Not a cached stage: each call renders.

    python -m clonetrain stage=render clone=anna audio=speech.wav              # the live package, else training output
    python -m clonetrain stage=render clone=anna audio=speech.wav render.package=data/clones/anna/v0002

The clone's footage is looped back and forth, the generated lower face is pasted into every frame through a soft
mask at the original resolution, the sound is muxed in, a visible "AI-generated" label is burnt into every frame
and the provenance (clone, version, model hash, consent hash, time) is written into the container metadata and a
JSON beside the video. Neither the label nor the provenance can be turned off.
"""

from __future__ import annotations

import datetime as dt
import json
import logging
import math
from datetime import datetime, timezone
from pathlib import Path

import numpy as np
from omegaconf import DictConfig

from clonetrain import __version__, avatar as avatar_mod, verdict
from clonetrain.errors import ClonetrainError, ConsentError, FootageError
from clonetrain.manifest import sha256_file
from clonetrain.media import convert
from clonetrain.media.label import LABEL, burn_label
from clonetrain.media.paste import paste
from clonetrain.media.write import write_video
from clonetrain.models.inference import generate, speech_windows
from clonetrain.progress import Progress
from clonetrain.workspace import Workspace, atomic_path, write_json_atomic

log = logging.getLogger(__name__)


class RenderError(ClonetrainError):
    """The render cannot start: no audio, no model, or consent no longer valid."""


def read_speech(path_str: str, sr: int) -> tuple[Path, np.ndarray]:
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


def check_consent(record: dict, clone: str, today: dt.date | None = None) -> None:
    expires = dt.date.fromisoformat(record["expires"])
    if (today or datetime.now(timezone.utc).date()) > expires:
        raise ConsentError(f"the consent of {record['person']} for clone {clone!r} expired on {expires}: "
                           "nothing may be rendered with this clone", "renew the consent record and re-package")


def _source(cfg: DictConfig, ws: Workspace) -> avatar_mod.Avatar:
    """render.package if given, else the clone's live package, else its training output."""
    if cfg.render.package:
        return avatar_mod.from_package(Path(cfg.render.package).expanduser())
    from clonetrain import registry

    live = registry.live_path(ws.root, ws.clone)
    if live is not None:
        return avatar_mod.from_package(live)
    return avatar_mod.from_workspace(cfg, ws)


def warn_if_weak(av: avatar_mod.Avatar) -> None:
    """Say so before rendering from a clone that missed its held-out targets (or was never evaluated)."""
    source = f"package {av.version}" if av.version else "training output"
    if av.verdict is None:
        log.warning("clone %s (%s) has not been evaluated: nothing says its lip-sync is any good "
                    "(run: python -m clonetrain stage=evaluate clone=%s)", av.clone, source, av.clone)
    elif av.verdict["level"] != "ok":
        log.warning("clone %s (%s): %s", av.clone, source, verdict.text(av.verdict))


def render(av: avatar_mod.Avatar, wav: np.ndarray, sr: int, audio_path: Path, out: Path, batch_size: int,
           progress_every_s: float = 30.0) -> dict:
    check_consent(av.consent, av.clone)
    warn_if_weak(av)
    n_out = math.ceil(len(wav) / (sr / av.fps))
    windows = speech_windows(av.mel, wav, sr, av.fps, n_out)
    sequence = avatar_mod.ping_pong(n_out, len(av.frames))
    h, w = av.frames.shape[1:3]

    def rendered():
        with Progress(f"render {out.name}", n_out, "frames", progress_every_s) as progress:
            for i in range(0, n_out, batch_size):
                ids = sequence[i : i + batch_size]
                faces = generate(av.generator, av.reference, av.crops[ids],
                                 windows[i : i + len(ids)], batch_size)
                for src, face in zip(ids, faces):
                    yield burn_label(paste(av.frames[src], face, av.squares[src]))
                progress.update(len(ids))

    provenance = {
        "label": LABEL, "ai_generated": True, "generator": f"clonetrain {__version__}", "clone": av.clone,
        "version": av.version, "model_sha256": av.model_sha256, "consent_sha256": av.consent["sha256"],
        "permitted_uses": av.consent["permitted_uses"], "audio_sha256": sha256_file(audio_path),
        "created": datetime.now(timezone.utc).isoformat(timespec="seconds"),
    }
    with atomic_path(out) as tmp:
        write_video(rendered(), (w, h), av.fps, tmp, audio=audio_path,
                    metadata={"comment": json.dumps(provenance), "description": f"{LABEL} video of clone {av.clone}",
                              "title": f"{LABEL}: {av.clone}"})
    record = {**provenance, "video_sha256": sha256_file(out), "frames": n_out, "fps": av.fps, "size": [w, h]}
    write_json_atomic(out.with_suffix(".provenance.json"), record)
    log.info("rendered %s: %d frames (%.1f s) at %dx%d from %s, labelled %r", out, n_out, n_out / av.fps, w, h,
             f"package {av.version}" if av.version else "training output", LABEL)
    return record


def run(cfg: DictConfig, ws: Workspace) -> Path:
    sr = cfg.ingest.sample_rate
    audio_path, wav = read_speech(cfg.audio, sr)
    av = _source(cfg, ws)
    out = Path(cfg.render.out).expanduser() if cfg.render.out else ws.root / "renders" / ws.clone / f"{audio_path.stem}.mp4"
    log.info("render: %s speaks %s (%.1f s of sound)", av.clone, audio_path.name, len(wav) / sr)
    render(av, wav, sr, audio_path, out, cfg.render.batch_size, cfg.progress_every_s)
    return out
