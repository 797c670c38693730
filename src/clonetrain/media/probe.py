"""Probe a take with ffprobe and turn its failures into errors that name the file and the fix."""

from __future__ import annotations

import json
import subprocess
from dataclasses import dataclass
from pathlib import Path

import ffmpeg

from clonetrain.core.errors import FootageError

# Leading bytes of the containers we accept; used to tell "not a video" from "an upload cut short".
_MAGIC = {b"ftyp": 4, b"\x1a\x45\xdf\xa3": 0}


@dataclass(frozen=True)
class MediaInfo:
    path: Path
    duration_s: float
    width: int
    height: int
    fps: float
    rotation: int  # degrees the player turns the picture; ffmpeg applies it when decoding
    has_audio: bool
    audio_duration_s: float | None
    audio_sample_rate: int | None
    video_codec: str


def _looks_like_container(path: Path) -> bool:
    with path.open("rb") as f:
        head = f.read(16)
    return any(head[off : off + len(m)] == m for m, off in _MAGIC.items())


def _ffprobe_error(path: Path, err: ffmpeg.Error) -> FootageError:
    text = (err.stderr or b"").decode("utf-8", "replace")
    if path.stat().st_size == 0:
        return FootageError(path.name, "the file is empty", "upload the take again", code="empty")
    if "moov atom not found" in text and _looks_like_container(path):
        return FootageError(
            path.name,
            "the upload is incomplete (the mp4 index, its 'moov atom', is missing: the file was cut short)",
            "upload the whole file again; if the camera stopped mid-recording, re-export the take",
            code="truncated",
        )
    return FootageError(
        path.name,
        "is not a video ffmpeg can read" + (f" ({text.strip().splitlines()[-1]})" if text.strip() else ""),
        "upload the original camera or phone file (mp4, mov, mkv or webm)",
        code="not_video",
    )


def _rotation(stream: dict) -> int:
    rot = stream.get("tags", {}).get("rotate")
    for side in stream.get("side_data_list", []) or []:
        if "rotation" in side:
            rot = -int(float(side["rotation"]))  # display matrix angle is counter-clockwise
    return int(float(rot)) % 360 if rot is not None else 0


# A healthy file is read in well under a second; a crafted or damaged one can keep ffprobe busy for good.
PROBE_TIMEOUT_S = 60


def _ffprobe(path: Path) -> dict:
    """ffprobe's JSON description of `path` (as ffmpeg.probe, which waits for ever): ffmpeg.Error when ffprobe
    fails, a FootageError when it does not finish within PROBE_TIMEOUT_S."""
    try:
        done = subprocess.run(["ffprobe", "-show_format", "-show_streams", "-of", "json", str(path)],
                              capture_output=True, timeout=PROBE_TIMEOUT_S)
    except subprocess.TimeoutExpired:
        raise FootageError(path.name, f"could not be read: ffprobe did not finish within {PROBE_TIMEOUT_S} s",
                           "export the file again from the camera or editing software", code="unreadable") from None
    if done.returncode != 0:
        raise ffmpeg.Error("ffprobe", done.stdout, done.stderr)
    return json.loads(done.stdout.decode("utf-8"))


def probe(path: Path) -> MediaInfo:
    """ffprobe a video take. Raises FootageError (code: truncated, not_video, no_video, empty)."""
    if not path.is_file():
        raise FootageError(path.name, "does not exist", code="missing")
    if path.stat().st_size == 0:
        raise FootageError(path.name, "the file is empty", "upload the take again", code="empty")
    try:
        info = _ffprobe(path)
    except ffmpeg.Error as err:
        raise _ffprobe_error(path, err) from None
    streams = info.get("streams", [])
    video = next((s for s in streams if s.get("codec_type") == "video" and s.get("disposition", {}).get("attached_pic") != 1), None)
    audio = next((s for s in streams if s.get("codec_type") == "audio"), None)
    if video is None:
        raise FootageError(path.name, "has no video stream", "upload the video file, not only its sound", code="no_video")
    num, _, den = video.get("avg_frame_rate", "0/1").partition("/")
    fps = float(num) / float(den or 1) if float(den or 1) else 0.0
    duration = float(video.get("duration") or info.get("format", {}).get("duration") or 0.0)
    if duration <= 0:
        raise FootageError(path.name, "has no readable frames (duration 0)", "upload the take again", code="truncated")
    return MediaInfo(
        path=path,
        duration_s=duration,
        width=int(video["width"]),
        height=int(video["height"]),
        fps=fps,
        rotation=_rotation(video),
        has_audio=audio is not None,
        audio_duration_s=float(audio["duration"]) if audio and audio.get("duration") else None,
        audio_sample_rate=int(audio["sample_rate"]) if audio and audio.get("sample_rate") else None,
        video_codec=video.get("codec_name", "?"),
    )


def probe_audio(path: Path) -> float:
    """Duration of a separate sound file; raises FootageError if it is not audio."""
    try:
        info = _ffprobe(path)
    except ffmpeg.Error as err:
        text = (err.stderr or b"").decode("utf-8", "replace").strip().splitlines()
        raise FootageError(path.name, f"is not an audio file ffmpeg can read ({text[-1] if text else 'unknown error'})",
                           "export the sound again as WAV", code="not_audio") from None
    audio = next((s for s in info.get("streams", []) if s.get("codec_type") == "audio"), None)
    if audio is None:
        raise FootageError(path.name, "has no audio stream", "export the sound again as WAV", code="not_audio")
    return float(audio.get("duration") or info.get("format", {}).get("duration") or 0.0)
