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

from clonetrain import __version__, avatar as avatar_mod
from clonetrain.audio.model_input import FeatureSpec
from clonetrain.errors import ClonetrainError, ConsentError, FootageError
from clonetrain.manifest import sha256_file
from clonetrain.media import convert
from clonetrain.media.label import LABEL, burn_label
from clonetrain.media.paste import paste
from clonetrain.media.write import write_video
from clonetrain.models.inference import generate
from clonetrain.voice import render as voice_render
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


def render(av: avatar_mod.Avatar, wav: np.ndarray, sr: int, audio_path: Path, out: Path, batch_size: int,
           voice: dict | None = None) -> dict:
    """`voice`: set when the sound is a generated voice (clonetrain.voice.render); recorded in the provenance."""
    check_consent(av.consent, av.clone)
    spec = FeatureSpec.from_dict(av.mel)
    feats = spec.model_input(wav, sr)
    n_out = math.ceil(len(wav) / (sr / av.fps))
    sequence = avatar_mod.ping_pong(n_out, len(av.frames))
    h, w = av.frames.shape[1:3]

    def rendered():
        for i in range(0, n_out, batch_size):
            ids = sequence[i : i + batch_size]
            faces = generate(av.generator, av.reference, av.crops[ids],
                             spec.windows(feats, np.arange(i, i + len(ids)) + 0.5, av.fps), batch_size)
            for src, face in zip(ids, faces):
                yield burn_label(paste(av.frames[src], face, av.squares[src]))

    provenance = {
        "label": LABEL, "ai_generated": True, "generator": f"clonetrain {__version__}", "clone": av.clone,
        "version": av.version, "model_sha256": av.model_sha256, "consent_sha256": av.consent["sha256"],
        "permitted_uses": av.consent["permitted_uses"], "audio_sha256": sha256_file(audio_path),
        "created": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "voice": voice or {"voice": "as recorded (not generated)"},
    }
    with atomic_path(out) as tmp:
        write_video(rendered(), (w, h), av.fps, tmp, audio=audio_path,
                    metadata={"comment": json.dumps(provenance),
                              "description": f"{LABEL} video of clone {av.clone}" + (" with a generated voice" if voice else ""),
                              "title": f"{LABEL}: {av.clone}"})
    record = {**provenance, "video_sha256": sha256_file(out), "frames": n_out, "fps": av.fps, "size": [w, h]}
    write_json_atomic(out.with_suffix(".provenance.json"), record)
    log.info("rendered %s: %d frames (%.1f s) at %dx%d from %s, labelled %r", out, n_out, n_out / av.fps, w, h,
             f"package {av.version}" if av.version else "training output", LABEL)
    return record


def run(cfg: DictConfig, ws: Workspace) -> Path:
    sr = cfg.ingest.sample_rate
    # Text (through the TTS) or voice=true: the speech is converted into the clone's voice first.
    script = voice_render.script(cfg, read_speech) if voice_render.wants_voice(cfg) else None
    if script is None:
        audio_path, wav = read_speech(cfg.audio, sr)
    av = _source(cfg, ws)
    stem = script.stem if script else audio_path.stem
    out = Path(cfg.render.out).expanduser() if cfg.render.out else ws.root / "renders" / ws.clone / f"{stem}.mp4"
    voice = None
    if script is not None:
        audio_path, voice = voice_render.convert(script, av, ws, out)
        _, wav = read_speech(str(audio_path), sr)
    render(av, wav, sr, audio_path, out, cfg.render.batch_size, voice)
    return out
