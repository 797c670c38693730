"""The clone as a live host: speech in as it arrives, labelled frames and sound out to any ffmpeg output.

    python -m clonetrain stage=stream clone=anna audio=speech.wav stream.out=rtmp://host/live/key
    python -m clonetrain stage=stream clone=anna audio=- stream.out=srt://host:9000   # 16 kHz s16le on stdin

Library: `Session` (say / pump / interrupt / idle), `FFmpegSink`; see session.py.
"""

from clonetrain.runtime.session import Session, Timing
from clonetrain.runtime.sink import FFmpegSink, SinkError

__all__ = ["Session", "Timing", "FFmpegSink", "SinkError"]
