"""render: the streamer speaking new audio. Not a cached stage: each call renders.

    python -m clonetrain stage=render clone=anna audio=speech.wav              # the live package, else training output
    python -m clonetrain stage=render clone=anna audio=speech.wav render.package=data/clones/anna/v0002
    python -m clonetrain stage=render clone=anna audio=speech.wav render.use=livestream_commerce

Before anything is loaded, the clone's CURRENT consent record (raw/<clone>/consent.yaml) must permit the use
(render.use, default render): revoked, expired, deleted or not permitted means refused. A package is rendered
only if the registry knows its manifest hash (or the studio key signed it), so an edited package is refused;
its frozen consent copy must be the same person's. An earlier deliverable is never overwritten: the next free
name (speech-2.mp4, ...) is used unless render.overwrite=true; an explicit render.out that exists is refused.
The clone plays its own footage (talking under speech, listening in pauses, forward, cutting only where the head
pose and face box match: clonetrain/motion), the generated lower face is pasted into every frame through a soft
mask at the original resolution, the sound is muxed in, a visible "AI-generated" label is burnt into every frame
and the provenance (clone, version, model hash, consent hash, time) is written into the container metadata and a
JSON beside the video. Neither the label nor the provenance can be turned off.
"""

from __future__ import annotations

import contextlib
import json
import logging
import math
import os
from datetime import datetime, timezone
from pathlib import Path
from typing import Callable, Iterator

import numpy as np
from omegaconf import DictConfig

from clonetrain import __version__
from clonetrain.product import avatar as avatar_mod
from clonetrain.evaluation import verdict
from clonetrain.product import consent as consent_mod
from clonetrain.core.config import Config
from clonetrain.core.errors import ClonetrainError, FootageError
from clonetrain.core.manifest import sha256_file
from clonetrain.media import convert
from clonetrain.media.label import LABEL, burn_label
from clonetrain.media.paste import paste
from clonetrain.media.write import write_video
from clonetrain.models.inference import generate, speech_windows
from clonetrain.core.progress import Progress
from clonetrain.motion.plan import PlanCfg
from clonetrain.product import voice_render
from clonetrain.vision import mouth_texture
from clonetrain.core.workspace import Workspace, write_json_atomic

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


def live_consent(cfg: DictConfig, ws: Workspace, use: str | None = None) -> consent_mod.Consent:
    """The clone's current consent must permit rendering, and this render's named use (render.use, or the
    stream's stream.use), today. A use the vocabulary does not know is refused, never read as an action."""
    use = use or cfg.render.use or "render"
    if use != "render" and use not in consent_mod.USES:
        raise RenderError(f"{use!r} is not a use a consent record can permit",
                          f"name one of: render, {', '.join(consent_mod.USES)}")
    current = consent_mod.require_live(ws.root, ws.clone, use="render")
    if use != "render":
        consent_mod.require_live(ws.root, ws.clone, use=use)
    return current


def _package_path(cfg: DictConfig, ws: Workspace) -> Path | None:
    """render.package if given, else the clone's live package, else None (the training output)."""
    if cfg.render.package:
        return Path(cfg.render.package).expanduser()
    from clonetrain.product import registry

    return registry.live_path(ws.root, ws.clone)


def warn_if_weak(av: avatar_mod.Avatar) -> None:
    """Say so before rendering from a clone that missed its held-out targets (or was never evaluated)."""
    source = f"package {av.version}" if av.version else "training output"
    if av.verdict is None:
        log.warning("clone %s (%s) has not been evaluated: nothing says its lip-sync is any good "
                    "(run: python -m clonetrain stage=evaluate clone=%s)", av.clone, source, av.clone)
    elif av.verdict["level"] != "ok":
        log.warning("clone %s (%s): %s", av.clone, source, verdict.text(av.verdict))


@contextlib.contextmanager
def source(cfg: DictConfig, ws: Workspace, current: consent_mod.Consent) -> Iterator[avatar_mod.Avatar]:
    """The avatar to render, for as long as the block runs: from a trusted package (an archive is extracted to a
    temporary folder, removed afterwards: the footage is read from it as the render goes) or from the training
    output; its frozen consent checked against the live one."""
    from clonetrain.product import clone_package, registry

    path = _package_path(cfg, ws)
    if path is None:
        av = avatar_mod.from_workspace(cfg, ws)  # with the config's mouth texture
        consent_mod.check_frozen(av.consent, current, ws.clone, "the training output")
        with av.frames:
            av.frames.preload(cfg.render.cache_mb << 20)
            yield av
        return
    with clone_package.opened(path) as pkg:
        if pkg.clone != ws.clone:
            raise RenderError(f"package {path} is clone {pkg.clone!r}, not {ws.clone!r}",
                              f"render it as clone={pkg.clone}, under that clone's consent")
        registry.check_trusted(ws.root, pkg)
        consent_mod.check_frozen(pkg.consent, current, ws.clone, f"package {pkg.clone} {pkg.version}")
        av = avatar_mod.from_package(pkg)
        av.texture = mouth_texture.from_cfg(av.mouth_bank, cfg.mouth_texture, av.control)
        with av.frames:
            av.frames.preload(cfg.render.cache_mb << 20)
            yield av


def output_path(cfg: DictConfig, ws: Workspace, audio_path: Path) -> tuple[Path, bool]:
    """(where the video goes, whether the user named it). Refuses a named file that exists unless overwriting."""
    if cfg.render.out:
        out = Path(cfg.render.out).expanduser().resolve()
        if out.exists() and not cfg.render.overwrite:
            raise RenderError(f"{out} already exists; an earlier deliverable is never overwritten",
                              "choose another render.out, or pass render.overwrite=true to replace it")
        return out, True
    return ws.root / "renders" / ws.clone / f"{audio_path.stem}.mp4", False


def _candidates(out: Path, named: bool):
    yield out
    if not named:
        for n in range(2, 10_000):
            yield out.with_name(f"{out.stem}-{n}{out.suffix}")


def deliver(tmp: Path, out: Path, overwrite: bool, named: bool) -> Path:
    """Move the finished video into place without replacing an earlier one: a link never overwrites, so two
    renders of speech.mp3 and speech.m4a get speech.mp4 and speech-2.mp4. Returns the path it got."""
    if overwrite:
        os.replace(tmp, out)
        return out
    for candidate in _candidates(out, named):
        if candidate.with_suffix(".provenance.json").exists():
            continue  # its provenance belongs to an earlier render
        try:
            os.link(tmp, candidate)
        except FileExistsError:
            if named:
                raise RenderError(f"{out} appeared while rendering; it was left untouched",
                                  "choose another render.out, or pass render.overwrite=true") from None
            continue
        tmp.unlink()
        return candidate
    raise RenderError(f"no free name for {out}")


def finish(tmp: Path, out: Path, overwrite: bool, named: bool,
           still_permitted: Callable[[], object] | None = None) -> Path:
    """Put the finished video (tmp) in place (see deliver). Consent is checked again first: it may have been revoked
    while the video was being made, and then nothing is delivered. tmp is gone afterwards, whatever happens."""
    try:
        if still_permitted is not None:
            still_permitted()
        os.chmod(tmp, 0o644)
        with open(tmp, "rb+") as f:
            os.fsync(f.fileno())
        return deliver(tmp, out, overwrite, named)
    finally:
        tmp.unlink(missing_ok=True)


def provenance(av: avatar_mod.Avatar, current: consent_mod.Consent | None, audio_path: Path | None,
               voice: dict | None, live: bool = False) -> dict:
    """What everything the clone renders or streams says about itself (in its metadata and beside it)."""
    return {
        "label": LABEL, "ai_generated": True, "generator": f"clonetrain {__version__}" + (" (live)" if live else ""),
        "clone": av.clone, "version": av.version, "model_sha256": av.model_sha256,
        "consent_sha256": av.consent["sha256"], "consent_live_sha256": current.sha256 if current else None,
        "permitted_uses": list(current.permitted_uses) if current else av.consent["permitted_uses"],
        "audio_sha256": sha256_file(audio_path) if audio_path else None,
        "created": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "voice": voice or {"voice": "as recorded (not generated)"},
        # The mouth placed on the face (shape) and its fine detail (amount), when used, are the person's own, from
        # their training frames.
        "mouth_texture": ({"from": "the clone's own training frames", "frames": len(av.texture.bank.lower),
                           "shape": av.texture.settings.shape, "amount": av.texture.settings.amount}
                          if av.texture is not None else None),
    }


def speech_frames(wav: np.ndarray, sr: int, fps: int, n: int) -> np.ndarray:
    """(n,) bool: output frames whose centre lies in speech (Silero VAD)."""
    from clonetrain.audio_analysis.vad import speech_segments

    centres = (np.arange(n) + 0.5) / fps
    mask = np.zeros(n, bool)
    for s, e in speech_segments(wav.astype(np.float32), sr):
        mask |= (centres >= s) & (centres < e)
    return mask


def render(av: avatar_mod.Avatar, wav: np.ndarray, sr: int, audio_path: Path, out: Path, batch_size: int,
           overwrite: bool = False, named: bool = True, current: consent_mod.Consent | None = None,
           progress_every_s: float = Config.progress_every_s, motion: PlanCfg | None = None, voice: dict | None = None,
           still_permitted: Callable[[], object] | None = None) -> dict:
    """Render `wav` with the avatar into `out` (see deliver for the name it gets); returns the provenance record.
    `voice`: set when the sound is a generated voice (clonetrain.product.voice_render); recorded in the provenance.
    `still_permitted`: the consent check made again before the video is delivered (raises when revoked since)."""
    warn_if_weak(av)
    n_out = math.ceil(len(wav) / (sr / av.fps))
    windows = speech_windows(av.mel, wav, sr, av.fps, n_out)
    path = av.path(speech_frames(wav, sr, av.fps, n_out), motion or PlanCfg())
    w, h = av.frames.size

    def rendered():
        with Progress(f"render {out.name}", n_out, "frames", progress_every_s) as progress:
            for i in range(0, n_out, batch_size):
                ks = range(i, min(i + batch_size, n_out))
                # Each output frame's footage frame, and during a blended cut also the one it fades from: both
                # get the generated mouth, so the fade never shows a mouth that does not speak.
                jobs = [(k, int(path.frames[k])) for k in ks]
                jobs += [(k, int(path.blend_from[k])) for k in ks if path.blend_from[k] >= 0]
                pictures = {src: av.frames.frame(src) for _, src in jobs}
                heard = np.stack([windows[k] for k, _ in jobs])
                faces = generate(av.generator, av.reference, np.stack([av.crop(src, pictures[src]) for _, src in jobs]),
                                 heard, batch_size)
                faces = av.detail(faces, len(ks), heard)
                done = {(k, src): paste(pictures[src], face, av.squares[src]) for (k, src), face in zip(jobs, faces)}
                for k in ks:
                    frame = done[(k, int(path.frames[k]))]
                    if path.blend_from[k] >= 0:
                        wgt = float(path.blend_weight[k])
                        frame = (wgt * done[(k, int(path.blend_from[k]))] + (1 - wgt) * frame).round().astype(np.uint8)
                    yield burn_label(frame)
                progress.update(len(ks))

    record = provenance(av, current, audio_path, voice)
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = out.with_name(f".{out.stem}.{os.getpid()}.rendering.mp4")
    try:
        write_video(rendered(), (w, h), av.fps, tmp, audio=audio_path,
                    metadata={"comment": json.dumps(record),
                              "description": f"{LABEL} video of clone {av.clone}" + (" with a generated voice" if voice else ""),
                              "title": f"{LABEL}: {av.clone}"})
        out = finish(tmp, out, overwrite, named, still_permitted)
    finally:
        tmp.unlink(missing_ok=True)
    record = {**record, "path": str(out), "video_sha256": sha256_file(out), "frames": n_out, "fps": av.fps,
              "size": [w, h], "footage_frames": [int(f) for f in path.frames], "cuts": path.cuts}
    write_json_atomic(out.with_suffix(".provenance.json"), record)
    log.info("rendered %s: %d frames (%.1f s) at %dx%d from %s, %d cuts in the footage, labelled %r", out, n_out,
             n_out / av.fps, w, h, f"package {av.version}" if av.version else "training output", len(path.cuts), LABEL)
    return record


def run(cfg: DictConfig, ws: Workspace) -> Path:
    current = live_consent(cfg, ws)  # first: nothing of a clone without consent is even loaded
    sr = cfg.ingest.sample_rate
    # Text (through the TTS) or voice=true: the speech is converted into the clone's voice first.
    script = voice_render.script(cfg, read_speech) if voice_render.wants_voice(cfg) else None
    if script is None:
        audio_path, wav = read_speech(cfg.audio, sr)
        stem = audio_path.stem
    else:
        stem = script.stem
    out, named = output_path(cfg, ws, Path(f"{stem}.wav"))
    with source(cfg, ws, current) as av:
        log.info("render: %s speaks %s", av.clone, f"{stem} in its generated voice" if script else stem)
        if av.version is None:
            log.info("render: no live version of %s, so from its training output (make a package live: "
                     "python -m clonetrain registry promote %s VERSION)", av.clone, av.clone)
        voice = None
        if script is not None:
            # The converted speech is muxed into the video (which holds it) and not kept beside it: a second
            # render of the same name must not replace the first one's sound.
            scratch = out.parent / f".{stem}.{os.getpid()}.mp4"
            audio_path, voice = voice_render.convert(script, av, ws, scratch)
        try:
            if script is not None:
                _, wav = read_speech(str(audio_path), sr)
            record = render(av, wav, sr, audio_path, out, cfg.render.batch_size, bool(cfg.render.overwrite), named,
                            current, cfg.progress_every_s, PlanCfg(**cfg.render.motion), voice,
                            still_permitted=lambda: live_consent(cfg, ws))
        finally:
            if script is not None:
                audio_path.unlink(missing_ok=True)
    return Path(record["path"])
