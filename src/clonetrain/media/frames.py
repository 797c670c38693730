"""Frames of constant-frame-rate videos by index, without holding the footage in memory.

A path through the footage mostly plays forward and cuts now and then: each reader decodes forward as one ffmpeg
stream and is restarted with an exact seek only when asked for a frame behind it or far ahead of it. A seek decodes
from the keyframe before it, which costs a live stream its latency at every cut: footage small enough to hold
(`preload`) is decoded once instead.
"""

from __future__ import annotations

import subprocess
from dataclasses import dataclass
from pathlib import Path

import ffmpeg
import numpy as np

from clonetrain.core.errors import FootageError


@dataclass(frozen=True)
class Video:
    path: Path
    width: int
    height: int
    fps: float


class _Reader:
    def __init__(self, video: Video, start: int):
        args = ffmpeg.input(str(video.path), **({"ss": f"{(start - 0.5) / video.fps:.6f}"} if start > 0 else {}))
        args = args.output("pipe:", format="rawvideo", pix_fmt="rgb24").global_args("-loglevel", "error", "-nostdin")
        self.video, self.next = video, start
        self.proc = subprocess.Popen(args.compile(), stdout=subprocess.PIPE, stderr=subprocess.DEVNULL)

    def read(self) -> np.ndarray:
        v = self.video
        size = v.width * v.height * 3
        buf = self.proc.stdout.read(size)
        if len(buf) < size:
            raise FootageError(v.path.name, f"frame {self.next} is past the end of the video", code="decode_failed")
        self.next += 1
        return np.frombuffer(buf, np.uint8).reshape(v.height, v.width, 3)

    def close(self) -> None:
        self.proc.kill()
        self.proc.stdout.close()
        self.proc.wait()


class FrameStore:
    """frame(i) for i in 0..len-1, where frame i is frame `local[i]` of `videos[video[i]]`."""

    def __init__(self, videos: list[Video], video: np.ndarray, local: np.ndarray, readers: int = 2,
                 max_skip: int = 50):
        self.videos, self.video, self.local = videos, np.asarray(video), np.asarray(local)
        self.max_readers, self.max_skip = readers, max_skip
        self._readers: list[_Reader] = []  # most recently used last
        self._held: np.ndarray | None = None

    def preload(self, max_bytes: int) -> bool:
        """Decode every frame once and hold them, if they fit in `max_bytes`. Returns whether it did."""
        w, h = self.size
        if self._held is not None or len(self) * w * h * 3 > max_bytes:
            return self._held is not None
        held = np.empty((len(self), h, w, 3), np.uint8)
        order = np.lexsort((self.local, self.video))  # each video once, forward
        for i in order:
            held[i] = self.frame(int(i))
        self.close()
        self._held = held
        return True

    def __len__(self) -> int:
        return len(self.local)

    @property
    def size(self) -> tuple[int, int]:
        return self.videos[0].width, self.videos[0].height

    def frame(self, i: int) -> np.ndarray:
        if self._held is not None:
            return self._held[i]
        v, t = self.videos[int(self.video[i])], int(self.local[i])
        reader = next((r for r in reversed(self._readers)
                       if r.video == v and r.next <= t <= r.next + self.max_skip), None)
        if reader is None:
            if len(self._readers) >= self.max_readers:
                self._readers.pop(0).close()
            reader = _Reader(v, t)
        else:
            self._readers.remove(reader)
        self._readers.append(reader)
        while reader.next < t:
            reader.read()
        return reader.read()

    def close(self) -> None:
        for r in self._readers:
            r.close()
        self._readers.clear()

    def __enter__(self) -> "FrameStore":
        return self

    def __exit__(self, *exc) -> None:
        self.close()
