"""Write RGB frames plus a sound file as an H.264/AAC mp4, streaming frames into ffmpeg."""

from __future__ import annotations

import subprocess
from pathlib import Path
from typing import Iterable

import ffmpeg
import numpy as np


def write_video(frames: Iterable[np.ndarray], size: tuple[int, int], fps: int, dst: Path,
                audio: Path | None = None, metadata: dict[str, str] | None = None, crf: int = 20) -> None:
    """Encode `frames` (h, w, 3 uint8 RGB; all of `size` = (w, h)) to `dst`, muxing `audio` if given and
    writing `metadata` into the container (e.g. comment=...)."""
    w, h = size
    video = ffmpeg.input("pipe:", format="rawvideo", pix_fmt="rgb24", s=f"{w}x{h}", framerate=fps)
    streams = [video]
    if audio is not None:
        streams.append(ffmpeg.input(str(audio)).audio)
    out = ffmpeg.output(*streams, str(dst), vcodec="libx264", pix_fmt="yuv420p", crf=crf, preset="veryfast",
                        movflags="+faststart+use_metadata_tags", f="mp4",
                        **({"acodec": "aac", "shortest": None} if audio else {}))
    args = out.overwrite_output().global_args("-loglevel", "error").compile()
    # -metadata is an output option: it must stand right before the output file name.
    meta = [arg for k, v in (metadata or {}).items() for arg in ("-metadata", f"{k}={v}")]
    at = args.index(str(dst))
    args = args[:at] + meta + args[at:]
    proc = subprocess.Popen(args, stdin=subprocess.PIPE, stderr=subprocess.PIPE)
    try:
        for frame in frames:
            proc.stdin.write(np.ascontiguousarray(frame, np.uint8).tobytes())
    finally:
        proc.stdin.close()
        err = proc.stderr.read().decode("utf-8", "replace")
        if proc.wait() != 0:
            raise RuntimeError(f"ffmpeg could not write {dst.name}: {err.strip()[-400:]}")
