"""Normalise takes with ffmpeg: constant-rate video with rotation applied, 16 kHz mono float audio."""

from __future__ import annotations

from pathlib import Path

import ffmpeg
import numpy as np

from clonetrain.core.errors import FootageError


def _run(stream, name: str, what: str, **kwargs):
    try:
        return stream.run(capture_stdout=True, capture_stderr=True, **kwargs)
    except ffmpeg.Error as err:
        text = (err.stderr or b"").decode("utf-8", "replace").strip().splitlines()
        raise FootageError(name, f"ffmpeg could not {what}: {text[-1] if text else 'unknown error'}",
                           "check the file plays in a video player; upload it again", code="decode_failed") from None


def normalise_video(src: Path, dst: Path, fps: int, max_side: int, crf: int) -> None:
    """Write `src` as constant `fps` H.264 without sound. ffmpeg applies rotation metadata while decoding
    (autorotate), so the output is upright; it is only scaled down, when its long side is above max_side."""
    v = ffmpeg.input(str(src)).video.filter("fps", fps=fps)
    # Keep even sizes for yuv420p; the expression only ever shrinks.
    v = v.filter("scale", f"trunc(min(1,{max_side}/max(iw,ih))*iw/2)*2", f"trunc(min(1,{max_side}/max(iw,ih))*ih/2)*2")
    out = ffmpeg.output(v, str(dst), vcodec="libx264", crf=crf, preset="veryfast", pix_fmt="yuv420p",
                        an=None, f="mp4", **{"map_metadata": "-1"})
    _run(out.overwrite_output(), src.name, "convert the video")


def count_frames(path: Path) -> tuple[int, int, int]:
    """(frames, width, height) of a normalised video, read from its packets (no decoding)."""
    info = ffmpeg.probe(str(path), count_packets=None, select_streams="v:0")
    s = info["streams"][0]
    return int(s["nb_read_packets"]), int(s["width"]), int(s["height"])


def decode_audio(src: Path, sample_rate: int, loudness_lufs: float | None = None) -> np.ndarray:
    """First audio stream of `src` as mono float32 at `sample_rate`, optionally loudness-normalised (EBU R128)."""
    a = ffmpeg.input(str(src)).audio
    if loudness_lufs is not None:
        a = a.filter("loudnorm", I=loudness_lufs, TP=-1.5, LRA=11)
    out = ffmpeg.output(a, "pipe:", format="f32le", acodec="pcm_f32le", ac=1, ar=sample_rate)
    data, _ = _run(out, src.name, "read the sound")
    return np.frombuffer(data, np.float32).copy()


def iter_frames(path: Path, width: int, height: int, batch: int = 64):
    """Yield RGB uint8 batches (n, h, w, 3) of a normalised video, decoding it once as a stream."""
    proc = (
        ffmpeg.input(str(path))
        .output("pipe:", format="rawvideo", pix_fmt="rgb24")
        .global_args("-loglevel", "error", "-nostdin")
        .run_async(pipe_stdout=True, pipe_stderr=True)
    )
    frame_bytes = width * height * 3
    complete = False
    try:
        while True:
            buf = proc.stdout.read(frame_bytes * batch)
            if not buf:
                break
            n = len(buf) // frame_bytes
            yield np.frombuffer(buf[: n * frame_bytes], np.uint8).reshape(n, height, width, 3)
        complete = True
    finally:
        if not complete:  # the reader stopped early: ffmpeg's broken pipe is expected, not an error
            proc.kill()
        proc.stdout.close()
        err = proc.stderr.read().decode("utf-8", "replace")
        proc.stderr.close()
        if proc.wait() != 0 and complete:
            raise FootageError(path.name, f"ffmpeg could not decode the video: {err.strip()[-300:]}", code="decode_failed")
