"""stream: the live clone as a command. Not a cached stage: each call streams.

    python -m clonetrain stage=stream clone=anna audio=speech.wav stream.out=tcp://127.0.0.1:9000
    python -m clonetrain stage=stream clone=anna audio=- stream.out=rtmp://host/live/key   # raw 16 kHz s16le stdin
    python -m clonetrain stage=stream clone=anna text="Welcome to the stream!" stream.out=srt://host:9000
    python -m clonetrain stage=stream clone=anna audio=actor.wav voice=true stream.out=...    # in anna's voice

The sound is fed in `stream.chunk_s` chunks, at real time (`stream.realtime=true`, as a live host would) or as
fast as the machine goes. The same clone source, consent check, label and provenance as render; the provenance
is also written to renders/<clone>/streams/<time>.provenance.json, since a live stream has no file to hold it.
"""

from __future__ import annotations

import logging
import os
import sys
import time
from datetime import datetime, timezone
from pathlib import Path

import numpy as np
from omegaconf import DictConfig

from clonetrain.media.label import LABEL
from clonetrain.motion.plan import PlanCfg
from clonetrain.runtime.session import Session
from clonetrain.runtime.sink import FFmpegSink
from clonetrain.core.workspace import Workspace, write_json_atomic

log = logging.getLogger(__name__)


def chunks(source: str, sr: int, chunk_s: float):
    """Speech as float32 chunks: from a file (any format ffmpeg reads) or raw 16 kHz s16le on stdin ('-')."""
    n = int(round(chunk_s * sr))
    if source == "-":
        while data := sys.stdin.buffer.read(2 * n):
            yield np.frombuffer(data[: len(data) // 2 * 2], "<i2").astype(np.float32) / 32768
        return
    from clonetrain.stages.render import read_speech

    _, wav = read_speech(source, sr)
    for i in range(0, len(wav), n):
        yield wav[i : i + n]


def run(cfg: DictConfig, ws: Workspace) -> dict:
    from clonetrain.stages import render
    from clonetrain.product import voice_render

    sr, c = cfg.ingest.sample_rate, cfg.stream
    if not c.out:
        raise render.RenderError("stage=stream needs somewhere to send the stream",
                                 "add stream.out=FILE.mp4, tcp://HOST:PORT, rtmp://... or srt://...")
    if c.out in ("-", "pipe:", "pipe:1"):
        raise render.RenderError("the command's own log goes to stdout, so the stream cannot",
                                 "send it to a file, a named pipe, tcp://, rtmp:// or srt://; or use "
                                 "clonetrain.runtime.FFmpegSink('-', ...) from Python")
    if not cfg.audio and not (cfg.text or cfg.text_file):
        raise render.RenderError("stage=stream needs the speech to say",
                                 "add audio=speech.wav (or audio=- for stdin), or text=... for the clone's voice")
    if cfg.audio == "-" and voice_render.wants_voice(cfg):
        raise render.RenderError("voice=true converts a whole recording, not speech from stdin",
                                 "give audio=FILE voice=true, or text=...")
    # The clone's current consent must permit rendering and the stream's use, before anything of it is loaded.
    current = render.live_consent(cfg, ws, c.use or "render")
    # Text (through the TTS) or voice=true: the speech is converted into the clone's voice before it streams.
    script = voice_render.script(cfg, render.read_speech) if voice_render.wants_voice(cfg) else None
    speech, voice, live = cfg.audio, None, None
    stamp = datetime.now(timezone.utc).strftime("%Y%m%d-%H%M%S")
    record_path = ws.root / "renders" / ws.clone / "streams" / f"{stamp}-{os.getpid()}.provenance.json"
    with render.source(cfg, ws, current) as av:
        render.warn_if_weak(av)
        if script is not None:
            scratch = ws.root / "renders" / ws.clone / "streams" / f".{script.stem}.{os.getpid()}.mp4"
            converted, voice = voice_render.convert(script, av, ws, scratch)
            speech = str(converted)
        started = time.perf_counter()
        state = "stopped before the first frame"
        try:
            provenance = render.provenance(av, current, Path(speech) if speech != "-" else None, voice,
                                           live=True) | {"out": c.out}
            sink = FFmpegSink(c.out, av.frames.size, av.fps, sr, provenance, fmt=c.format or None,
                              timeout_s=c.timeout_s)
            try:
                live = Session(av, sink, sr, PlanCfg(**cfg.render.motion), batch_size=c.batch_size)
            except BaseException:
                sink.abort()
                raise
            with live:
                for i, chunk in enumerate(chunks(speech, sr, c.chunk_s)):
                    if c.realtime:  # a live host's speech arrives no faster than it is spoken
                        time.sleep(max(0.0, started + i * c.chunk_s - time.perf_counter()))
                    live.say(chunk)
                    live.pump()
            state = "complete"
        except BaseException as err:
            state = f"stopped: {type(err).__name__}: {err}" if live else state
            raise
        finally:
            if script is not None:  # the stream carried the converted speech; the provenance keeps its hash
                Path(speech).unlink(missing_ok=True)
            if live is not None:  # frames went out: what they were is recorded, however the stream ended
                latencies = live.timing.latencies_ms(live.spf)
                record = {**provenance, "state": state, "frames": live.frame, "fps": av.fps,
                          "seconds": round(time.perf_counter() - started, 2), "cuts": live.planner.cuts,
                          "latency_ms_p95": round(float(np.percentile(latencies, 95)), 1) if latencies else None}
                write_json_atomic(record_path, record)
    log.info("streamed %d frames (%.1f s) of clone %s to %s in %.1f s, labelled %r", live.frame, live.frame / av.fps,
             av.clone, c.out, record["seconds"], LABEL)
    return record
