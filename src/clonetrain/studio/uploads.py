"""Uploads: streamed to disk in chunks under a per-clone lock, checked by their container (ffprobe, not the
name's extension), stored under names the studio chooses (take-001.mp4), never under the name that was sent.

A take arrives in <root>/studio/incoming/<random>.part, counted and hashed as it streams; past the size limit it is
cut off and removed. Only a file ffprobe reads as a video container with a video stream (or, for split sound, a
WAV with an audio stream) is moved to raw/<clone>/take-NNN.<ext>. A sound file whose name matches an uploaded
video's name (clip.mp4 + clip.wav) gets the video's number (take-003.mp4 + take-003.wav): ingest pairs them.
The names that were sent are kept for display in <root>/studio/uploads/<clone>.json.
"""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import json
import os
import re
import subprocess
import uuid
from datetime import datetime, timezone
from pathlib import Path
from typing import AsyncIterator, Iterator

from clonetrain.core.errors import ClonetrainError, FootageError
from clonetrain.media import probe
from clonetrain.core.workspace import write_json_atomic

# ffprobe's format_name of the containers a take may come in -> the extension the studio stores it under.
VIDEO_CONTAINERS = {"mov,mp4,m4a,3gp,3g2,mj2": ".mp4", "matroska,webm": ".mkv"}
SOUND_CONTAINERS = {"wav": ".wav"}
# Speech to render may be any common sound file (render reads anything ffmpeg reads).
SPEECH_CONTAINERS = {"wav": ".wav", "mp3": ".mp3", "flac": ".flac", "ogg": ".ogg", "mov,mp4,m4a,3gp,3g2,mj2": ".m4a"}
NAME_MAX = 200
# Seconds ffprobe may take to name an upload's container (it reads only the header: a second is plenty).
PROBE_TIMEOUT_S = 30
_BAD_NAME = re.compile(r"[/\\\x00-\x1f]")


class UploadError(ClonetrainError):
    """An upload refused: `status` is the HTTP status the page answers with."""

    def __init__(self, message: str, fix: str | None = None, status: int = 400):
        super().__init__(message, fix)
        self.status = status


def check_name(name: str | None) -> str:
    """The name a browser sent, for display only. A name with a path in it (../../x.mp4) is refused outright:
    browsers never send one, so it is a crafted request."""
    if not name or len(name) > NAME_MAX or _BAD_NAME.search(name) or name.strip(". ") == "" or ".." in name:
        raise UploadError(f"the file name {name!r} is not allowed (a path, or no name)",
                          "upload the file itself, with a plain name such as take1.mp4", status=400)
    return name


@contextlib.contextmanager
def clone_lock(studio_dir: Path, clone: str) -> Iterator[None]:
    """One upload per clone at a time: a second one is refused at once (it would race for the take numbers)."""
    locks = studio_dir / "locks"
    locks.mkdir(parents=True, exist_ok=True)
    with open(locks / f"{clone}.upload", "a+") as fh:
        try:
            fcntl.flock(fh, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            raise UploadError(f"another upload to clone {clone!r} is in progress",
                              "wait for it to finish, then try again", status=409) from None
        try:
            yield
        finally:
            fcntl.flock(fh, fcntl.LOCK_UN)


@contextlib.asynccontextmanager
async def receive(chunks: AsyncIterator[bytes], studio_dir: Path, limit: int):
    """Stream `chunks` into a fresh file under studio/incoming/; yields (path, size, sha256). The file is removed
    when the block ends, however it ends (a caller that keeps it moves it first)."""
    incoming = studio_dir / "incoming"
    incoming.mkdir(parents=True, exist_ok=True)
    part = incoming / f"{uuid.uuid4().hex}.part"
    sha, size = hashlib.sha256(), 0
    try:
        with open(part, "xb") as f:
            async for chunk in chunks:
                size += len(chunk)
                if size > limit:
                    raise UploadError(f"the file is larger than the upload limit of {limit / 2**20:g} MB",
                                      "upload a shorter take, or ask the admin to raise max_upload_mb", status=413)
                f.write(chunk)
                sha.update(chunk)
        if size == 0:
            raise UploadError("the file is empty", "upload the file again")
        yield part, size, sha.hexdigest()
    finally:
        part.unlink(missing_ok=True)


def container(path: Path, shown: str, allowed: dict[str, str], what: str) -> str:
    """The extension to store a file under, from its container as ffprobe reads it; refuses anything else."""
    fix = "upload the original camera or phone file" if "video" in what else "upload a WAV file"
    try:
        # Under a time limit: a crafted file must not hold a request (and the clone's upload lock) for ever.
        out = subprocess.run(["ffprobe", "-v", "error", "-show_format", "-of", "json", str(path)],
                             capture_output=True, check=True, timeout=PROBE_TIMEOUT_S)
        fmt = json.loads(out.stdout)["format"]["format_name"]
    except subprocess.TimeoutExpired:
        raise UploadError(f"{shown}: ffprobe did not finish reading it within {PROBE_TIMEOUT_S} s", fix,
                          status=415) from None
    except (subprocess.CalledProcessError, json.JSONDecodeError, KeyError):
        raise UploadError(f"{shown} is not {what} (ffprobe cannot read it)", fix, status=415) from None
    if fmt not in allowed:
        raise UploadError(f"{shown} is a {fmt} file, not {what}",
                          f"upload {what} ({', '.join(sorted(set(allowed.values())))})", status=415)
    return allowed[fmt]


def inspect_take(path: Path, shown: str) -> tuple[str, dict]:
    """(extension, facts) of an uploaded take: a video container with a readable video stream, or a WAV sound."""
    try:
        ext = container(path, shown, {**VIDEO_CONTAINERS, **SOUND_CONTAINERS}, "a video (or a WAV sound)")
        if ext == ".wav":
            return ext, {"kind": "sound", "duration_s": round(probe.probe_audio(path), 2)}
        info = probe.probe(path)
    except FootageError as err:
        raise UploadError(f"{shown}: {err.reason}", err.fix, status=415) from None
    return ext, {"kind": "video", "duration_s": round(info.duration_s, 2), "size": [info.width, info.height],
                 "has_audio": info.has_audio}


def inspect_speech(path: Path, shown: str) -> str:
    ext = container(path, shown, SPEECH_CONTAINERS, "a sound file")
    try:
        probe.probe_audio(path)
    except FootageError as err:
        raise UploadError(f"{shown}: {err.reason}", err.fix, status=415) from None
    return ext


def index_path(studio_dir: Path, clone: str) -> Path:
    return studio_dir / "uploads" / f"{clone}.json"


def read_index(studio_dir: Path, clone: str) -> dict:
    path = index_path(studio_dir, clone)
    try:
        return json.loads(path.read_text()) if path.is_file() else {"stems": {}, "files": {}}
    except (OSError, json.JSONDecodeError):
        return {"stems": {}, "files": {}}


def store_take(studio_dir: Path, raw_dir: Path, clone: str, part: Path, shown: str, ext: str, facts: dict,
               size: int, sha256: str, user: str) -> str:
    """Move a checked upload into raw/<clone>/ under the studio's name for it; returns that name. Call under
    clone_lock. Never replaces a file: the same content again is refused, and a name in use gets the next number."""
    index = read_index(studio_dir, clone)
    for stored, entry in index["files"].items():
        if entry.get("sha256") == sha256 and (raw_dir / stored).exists():
            raise UploadError(f"{shown} was already uploaded (as {entry.get('name')!r})", "nothing to do", status=409)
    stem = Path(shown).stem.casefold()
    number = index["stems"].get(stem)
    if number is None or (raw_dir / f"take-{number:03d}{ext}").exists():
        taken = [int(m.group(1)) for p in raw_dir.iterdir() if (m := re.match(r"take-(\d+)\.", p.name))]
        number = max([*taken, *index["stems"].values()], default=0) + 1
    stored = f"take-{number:03d}{ext}"
    raw_dir.mkdir(parents=True, exist_ok=True)
    os.link(part, raw_dir / stored)  # a link never replaces an existing file
    index["stems"][stem] = number
    index["files"][stored] = {"name": shown, "size": size, "sha256": sha256, "by": user,
                              "time": datetime.now(timezone.utc).isoformat(timespec="seconds"), **facts}
    write_json_atomic(index_path(studio_dir, clone), index)
    return stored


def set_aside(studio_dir: Path, raw_dir: Path, clone: str, stored: str) -> Path:
    """Take a take out of the clone without deleting it: it moves to studio/removed/<clone>/. Call under
    clone_lock. Returns where it went."""
    folder = studio_dir / "removed" / clone
    folder.mkdir(parents=True, exist_ok=True)
    dest = folder / f"{datetime.now(timezone.utc).strftime('%Y%m%d-%H%M%S')}-{stored}"
    os.link(raw_dir / stored, dest)  # never replaces anything already set aside
    (raw_dir / stored).unlink()
    return dest


def store_speech(studio_dir: Path, clone: str, part: Path, ext: str) -> Path:
    """Keep speech to render under a name the studio chooses: it names the render (speech-<time>.mp4)."""
    folder = studio_dir / "speech" / clone
    folder.mkdir(parents=True, exist_ok=True)
    stamp = datetime.now(timezone.utc).strftime("%Y%m%d-%H%M%S")
    for n in range(1, 1000):
        dest = folder / (f"speech-{stamp}{ext}" if n == 1 else f"speech-{stamp}-{n}{ext}")
        try:
            os.link(part, dest)
            return dest
        except FileExistsError:
            continue
    raise UploadError("no free name for the speech file", status=500)


DOCUMENT_MAGIC = {b"%PDF-": ".pdf", b"\x89PNG\r\n\x1a\n": ".png", b"\xff\xd8\xff": ".jpg"}


def document_extension(head: bytes) -> str:
    """The signed consent document must be a PDF or a photo (PNG, JPEG), by its first bytes."""
    for magic, ext in DOCUMENT_MAGIC.items():
        if head.startswith(magic):
            return ext
    raise UploadError("the consent document is not a PDF, PNG or JPEG file",
                      "attach the signed release as a PDF or a photo of it", status=415)
