"""ingest: raw takes -> upright 25 fps videos, one 16 kHz loudness-normalised sound track, a frame table.

Reads  data/raw/<clone>/   (takes: mp4 mov mkv webm m4v; a silent video may have STEM.wav beside it; consent.yaml)
Writes takes/NNN.mp4       each usable take, constant fps, rotation applied, no sound
       audio.wav           the takes' sound, concatenated, exactly fps-aligned (16 kHz mono PCM16)
       frames.npz          per frame: take index, frame index within the take, speech_take flag
       takes.json          every take with status, reason and fix (rejected takes included)
       vad.json            speech segments on the concatenated timeline
       consent.json        the validated consent record and its sha256

    python -m clonetrain stage=ingest clone=anna
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import soundfile as sf
from omegaconf import DictConfig
from tqdm import tqdm

from clonetrain.product import consent as consent_mod
from clonetrain.contract import files
from clonetrain.contract.contents import FrameIndex
from clonetrain.audio_analysis import vad
from clonetrain.core.errors import FootageError, NotEnoughFootageError
from clonetrain.core.manifest import StageResult, sha256_file
from clonetrain.media import convert, probe
from clonetrain.core.workspace import Workspace


SILENCE_PEAK = 1e-4  # float full scale; digital silence stays below it even after loudness normalisation
SOUND_EXTENSIONS = (".wav",)


def _videos(cfg: DictConfig, ws: Workspace) -> list[Path]:
    exts = {e.lower() for e in cfg.ingest.video_extensions}
    if not ws.raw_dir.is_dir():
        return []
    return sorted(p for p in ws.raw_dir.iterdir() if p.is_file() and p.suffix.lower() in exts)


def _sound_beside(video: Path) -> Path | None:
    """STEM.wav beside the video; the extension in any case (cameras and Windows write STEM.WAV)."""
    exact = [video.with_suffix(ext) for ext in SOUND_EXTENSIONS]
    found = [p for p in exact if p.is_file()]
    found += sorted(p for p in video.parent.iterdir() if p.is_file() and p.stem == video.stem and p != video
                    and p.suffix.lower() in SOUND_EXTENSIONS and p not in found)
    return found[0] if found else None


def inputs(cfg: DictConfig, ws: Workspace) -> list[Path]:
    found = []
    for v in _videos(cfg, ws):
        found.append(v)
        if (s := _sound_beside(v)) is not None:
            found.append(s)
    consent = ws.raw_dir / consent_mod.FILENAME
    return found + ([consent] if consent.is_file() else [])


def _ingest_take(video: Path, index: int, cfg: DictConfig, out_dir: Path) -> tuple[dict, np.ndarray, list[str]]:
    """Normalise one take. Returns its row, its frame-aligned sound and warnings; raises FootageError."""
    c = cfg.ingest
    warnings: list[str] = []
    info = probe.probe(video)
    sound = _sound_beside(video)
    if sound is not None:
        sound_len = probe.probe_audio(sound)
        if abs(sound_len - info.duration_s) > c.max_av_length_mismatch_s:
            warnings.append(f"{video.name}: the sound {sound.name} lasts {sound_len:.1f} s but the picture "
                            f"{info.duration_s:.1f} s; both are aligned at their start")
    elif not info.has_audio:
        raise FootageError(video.name, "has no sound track, so lip-sync cannot be learned from it",
                           f"put the take's recorded sound beside it as {video.stem}.wav", code="no_audio")

    dst = files.output(out_dir, "ingest", "take_file", index)
    dst.parent.mkdir(exist_ok=True)
    convert.normalise_video(video, dst, c.fps, c.max_side, c.crf)
    n_frames, width, height = convert.count_frames(dst)
    if n_frames == 0:
        raise FootageError(video.name, "has no decodable frames", "upload the take again", code="truncated")

    wav = convert.decode_audio(sound or video, c.sample_rate, c.loudness_lufs)
    if wav.size == 0 or float(np.abs(wav).max()) < SILENCE_PEAK:
        raise FootageError(video.name, "its sound track is silent (digital silence): there is no voice to learn from",
                           f"re-export the take with its sound, or put the sound beside it as {video.stem}.wav",
                           code="silent_audio")
    samples_per_frame = c.sample_rate // c.fps
    need = n_frames * samples_per_frame
    wav = np.pad(wav[:need], (0, max(0, need - wav.size)))
    segments = vad.speech_segments(wav, c.sample_rate)
    duration = n_frames / c.fps
    speech = vad.total_seconds(segments)
    row = {
        "status": "ok",
        "frames": n_frames,
        "duration_s": round(duration, 3),
        "speech_s": round(speech, 2),
        "speech_ratio": round(speech / duration, 3),
        "width": width,
        "height": height,
        "source_size": [info.width, info.height],
        "source_fps": round(info.fps, 3),
        "rotation": info.rotation,
        "sound_from": sound.name if sound else video.name,
        "video": f"takes/{index:03d}.mp4",
        "lipsync": speech / duration >= c.min_speech_ratio,
        "segments": segments,
    }
    if info.rotation:
        warnings.append(f"{video.name}: rotated {info.rotation} degrees by its metadata; turned upright")
    if not row["lipsync"]:
        warnings.append(f"{video.name}: only {speech:.1f} s of speech in {duration:.1f} s "
                        f"({100 * speech / duration:.0f}%): the sound is probably music or background, not the "
                        f"speaker's voice; its frames are kept for the face but not used for lip-sync "
                        f"(a take needs {100 * c.min_speech_ratio:.0f}% speech: ingest.min_speech_ratio)")
    return row, wav, warnings


def run(cfg: DictConfig, ws: Workspace, out_dir: Path) -> StageResult:
    c = cfg.ingest
    consent = consent_mod.load(ws.raw_dir, ws.clone)
    videos = _videos(cfg, ws)
    if not videos:
        raise NotEnoughFootageError(f"no takes found in {ws.raw_dir}",
                                    f"put the clone's video files there ({', '.join(c.video_extensions)})")
    result = StageResult()
    rows, sounds = [], []
    take_of_frame, frame_in_take, lipsync_frame = [], [], []
    offset_frames = 0
    for index, video in enumerate(tqdm(videos, desc="ingest", unit="take", disable=None)):
        base = {"take": index, "file": video.name, "sha256": sha256_file(video)}
        try:
            row, wav, warnings = _ingest_take(video, index, cfg, out_dir)
        except FootageError as err:
            rows.append({**base, "status": "rejected", "code": err.code, "reason": err.reason, "fix": err.fix})
            result.warnings.append(f"{video.name} rejected: {err.reason}" + (f" (fix: {err.fix})" if err.fix else ""))
            continue
        result.warnings.extend(warnings)
        row = {**base, **row, "first_frame": offset_frames}
        row["segments"] = [(round(s + offset_frames / c.fps, 3), round(e + offset_frames / c.fps, 3))
                           for s, e in row["segments"]]
        rows.append(row)
        sounds.append(wav)
        take_of_frame.append(np.full(row["frames"], index, np.int16))
        frame_in_take.append(np.arange(row["frames"], dtype=np.int32))
        lipsync_frame.append(np.full(row["frames"], row["lipsync"], bool))
        offset_frames += row["frames"]

    ok = [r for r in rows if r["status"] == "ok"]
    usable = sum(r["duration_s"] for r in ok)
    speech = sum(r["speech_s"] for r in ok if r["lipsync"])
    if usable < c.min_duration_s:
        rejected = [r for r in rows if r["status"] != "ok"]
        reasons = "; ".join(f"{r['file']}: {r['reason']}" for r in rejected)
        # The rejected takes' own fixes say what to do; the generic advice only when there is none.
        fixes = [f"{r['file']}: {r['fix']}" for r in rejected if r.get("fix")]
        generic = "add takes of the person talking to camera (about one minute in all)"
        raise NotEnoughFootageError(
            f"clone {ws.clone!r} has {usable:.1f} s of usable footage, {c.min_duration_s - usable:.1f} s short of the "
            f"minimum of {c.min_duration_s:g} s (ingest.min_duration_s)"
            + (f" ({reasons})" if reasons else ""),
            "; ".join(fixes) + ("" if ok else f"; or {generic}") if fixes else generic,
        )
    if usable + 1 / c.fps < c.warn_duration_s:  # within a frame of the mark counts as reaching it
        result.warnings.append(f"only {usable:.1f} s of usable footage; one minute or more gives a better clone")
    lipsync_ready = speech >= c.min_speech_s
    if not lipsync_ready:
        result.warnings.append(f"only {speech:.1f} s of usable speech, {c.min_speech_s - speech:.1f} s short of the "
                               f"{c.min_speech_s:g} s lip-sync training needs (ingest.min_speech_s): "
                               "this clone cannot be trained for lip-sync until takes with the person speaking are added")

    segments = [seg for r in ok for seg in r.pop("segments")]
    sf.write(files.output(out_dir, "ingest", "audio"), np.concatenate(sounds), c.sample_rate, subtype="PCM_16")
    files.write(out_dir, "ingest", "frames", FrameIndex(take=np.concatenate(take_of_frame), frame=np.concatenate(frame_in_take),
                                                        lipsync=np.concatenate(lipsync_frame), fps=np.array(c.fps)))
    files.write_record(out_dir, "ingest", "takes", rows)
    files.write_record(out_dir, "ingest", "vad", {"sample_rate": c.sample_rate, "segments": segments})
    # The record frozen with the footage: it proves what this was built under; the live record still decides.
    files.write_record(out_dir, "ingest", "consent", consent.as_record())

    result.counts = {"takes": len(rows), "takes_ok": len(ok), "frames": offset_frames,
                     "usable_s": round(usable, 2), "speech_s": round(speech, 2), "lipsync_ready": lipsync_ready}
    result.summary = [f"{len(ok)}/{len(rows)} takes usable, {usable:.1f} s of footage, {speech:.1f} s of speech"]
    result.summary += [
        f"{r['file']}: " + (f"{r['duration_s']:.1f} s, {r['speech_s']:.1f} s speech, {r['width']}x{r['height']}"
                            if r["status"] == "ok" else f"REJECTED - {r['reason']}")
        for r in rows
    ]
    result.details = {"consent_sha256": consent.sha256}
    return result
