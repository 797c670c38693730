"""Where a live clone's frames and sound go: any ffmpeg output (a file, a pipe, an RTMP or SRT URL, a TCP
receiver), encoded as the stream goes (H.264 zero-latency, AAC).

Video goes to ffmpeg's stdin and sound to a second pipe, each written from its own thread: ffmpeg reads its
inputs in its own order (at start it reads the sound alone until it knows the stream), and neither pipe may wait
on the other. A receiver that goes away ends ffmpeg: the next write raises
SinkError instead of hanging.
"""

from __future__ import annotations

import json
import os
import queue
import subprocess
import tempfile
import threading
import time

import numpy as np

from clonetrain.core.errors import ClonetrainError

# Container per URL scheme or file extension, where ffmpeg cannot guess it from a URL.
FORMATS = {"rtmp": "flv", "rtmps": "flv", "srt": "mpegts", "udp": "mpegts", "tcp": "mpegts", "pipe": "mpegts"}


class SinkError(ClonetrainError):
    """The stream's receiver is gone or refused the stream."""


def output_format(url: str) -> str | None:
    scheme = url.split("://", 1)[0].lower() if "://" in url else ("pipe" if url.startswith("pipe:") or url == "-" else "")
    return FORMATS.get(scheme)


class FFmpegSink:
    def __init__(self, url: str, size: tuple[int, int], fps: int, sample_rate: int, provenance: dict,
                 fmt: str | None = None, timeout_s: float = 10.0):
        from clonetrain.media.label import LABEL

        w, h = size
        self.url, self.timeout_s = url, timeout_s
        read_audio, self._audio_fd = os.pipe()
        fmt = fmt or output_format(url)
        args = ["ffmpeg", "-loglevel", "error", "-nostdin", "-y",
                "-f", "rawvideo", "-pix_fmt", "rgb24", "-s", f"{w}x{h}", "-framerate", str(fps), "-i", "pipe:0",
                "-f", "s16le", "-ar", str(sample_rate), "-ac", "1", "-i", f"pipe:{read_audio}",
                "-map", "0:v", "-map", "1:a", "-c:v", "libx264", "-preset", "veryfast", "-tune", "zerolatency",
                "-pix_fmt", "yuv420p", "-g", str(2 * fps), "-c:a", "aac", "-b:a", "128k",
                "-metadata", f"title={LABEL}: {provenance.get('clone')}",
                "-metadata", f"comment={json.dumps(provenance)}"]
        if url.startswith(("tcp://", "rtmp://", "rtmps://")):
            # A receiver that stops reading must end the stream, not stall it (SRT has its own peer timeout).
            args += ["-rw_timeout", str(int(timeout_s * 1e6))]
        args += [*(["-f", fmt] if fmt else []), "pipe:1" if url in ("-", "pipe:") else url]
        # ffmpeg's messages go to a file: a pipe nobody reads while streaming could fill up and stall it.
        self._stderr = tempfile.TemporaryFile()
        self.proc = subprocess.Popen(args, stdin=subprocess.PIPE, stderr=self._stderr, pass_fds=(read_audio,))
        os.close(read_audio)
        fps_queue = max(2 * fps, 8)
        self._error: BaseException | None = None
        self._pipes = [_PipeWriter(self.proc.stdin, fps_queue, self), _PipeWriter(os.fdopen(self._audio_fd, "wb"), fps_queue, self)]

    def _gone(self) -> SinkError:
        err = ""
        if self.proc.poll() is not None:
            self._stderr.seek(0)
            err = self._stderr.read().decode("utf-8", "replace").strip()
        return SinkError(f"the stream's receiver at {self.url} went away or refused the stream"
                         + (f": {err[-300:]}" if err else ""), "check that the receiver is running and reachable")

    def write(self, frame: np.ndarray, pcm: np.ndarray) -> None:
        """One labelled RGB frame and its sound (float32 in [-1, 1], 1/fps seconds)."""
        if self.proc.poll() is not None or self._error is not None:
            raise self._gone()
        video, audio = self._pipes
        ok = video.put(np.ascontiguousarray(frame, np.uint8).tobytes()) and audio.put(
            (np.clip(pcm, -1, 1) * 32767).astype("<i2").tobytes())
        if not ok:
            raise self._gone()

    def close(self) -> None:
        """Finish the stream: flush both pipes and wait for ffmpeg."""
        for pipe in self._pipes:
            pipe.finish()
        try:
            rc = self.proc.wait(timeout=60)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            raise self._gone() from None
        if rc != 0 or self._error is not None:
            raise self._gone()

    def abort(self) -> None:
        """Stop now (the stream failed): kill ffmpeg, close the pipes."""
        self.proc.kill()
        for pipe in self._pipes:
            pipe.finish()
        self.proc.wait()


class _PipeWriter:
    """Writes queued byte blocks to one of ffmpeg's pipes from its own thread."""

    def __init__(self, out, depth: int, sink: FFmpegSink):
        self.out, self.sink = out, sink
        self.queue: queue.Queue = queue.Queue(maxsize=depth)
        self.thread = threading.Thread(target=self._run, daemon=True)
        self.thread.start()

    def _run(self) -> None:
        try:
            while (block := self.queue.get()) is not None:
                self.out.write(block)
        except OSError as err:  # the receiver went away: ffmpeg exited
            self.sink._error = err
        finally:
            try:
                self.out.close()
            except OSError:
                pass

    def put(self, block: bytes) -> bool:
        """Queue a block; False once the writer has failed, ffmpeg has exited, or ffmpeg has not read for the
        sink's timeout (a receiver that stalls without hanging up)."""
        deadline = time.monotonic() + self.sink.timeout_s
        while self.thread.is_alive() and time.monotonic() < deadline:
            try:
                self.queue.put(block, timeout=0.5)
                return True
            except queue.Full:
                if self.sink.proc.poll() is not None:
                    return False
        return False

    def finish(self) -> None:
        if self.thread.is_alive():
            try:
                self.queue.put(None, timeout=self.sink.timeout_s)
            except queue.Full:
                pass
            self.thread.join(timeout=self.sink.timeout_s)
