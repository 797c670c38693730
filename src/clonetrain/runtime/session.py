"""A live clone: speech in, in chunks as it arrives; labelled frames and their sound out, at the footage's frame
rate. What a streaming host drives.

    from clonetrain import runtime
    with runtime.Session(avatar, sink) as live:
        live.say(chunk)          # 16 kHz mono float32, any length; may be called while frames go out
        live.pump()              # write every frame whose sound (and 0.1 s after it) has arrived
        live.interrupt()         # a viewer's question: drop the rest of this utterance, back to listening
        live.idle(seconds)       # nothing to say: listening footage, mouth at rest

A Session trusts its caller with the avatar: `stage=stream` (runtime/stream.py) opens it through render.source, which
checks the clone's live consent and the package's registered hash first; a host embedding Session must do the same.

Each frame's sound is 1/fps s of the speech (silence once it runs out). Its mouth is generated from the same
mel window as in render (0.1 s either side), so a frame waits for 0.1 s of the speech after it. A clone hearing
Whisper features gets Whisper's live form (a short window of the last seconds, whisper.encode_recent): near
render's features, not the same, since render's grid windows hear up to 30 s ahead. The footage
frame under it comes from the motion planner, told what the queued speech holds (voice or pause) as far as it
is known. Every frame carries the "AI-generated" label; the stream's metadata carries the provenance.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field

import numpy as np

from clonetrain.product.avatar import Avatar
from clonetrain.core.errors import ClonetrainError
from clonetrain.media.label import burn_label
from clonetrain.media.paste import paste
from clonetrain.audio_analysis import whisper
from clonetrain.audio_analysis.model_input import FeatureSpec
from clonetrain.models.inference import (LIVE_BATCH, LIVE_LOOKAHEAD_S, cut_padded, generate, recent_windows,
                                         speech_windows)
from clonetrain.motion.library import close_gaps
from clonetrain.motion.plan import PlanCfg, Planner

VAD_WINDOW = 512  # samples: Silero's window at 16 kHz


@dataclass
class Timing:
    """When each chunk of speech arrived and when its last frame went out (perf_counter seconds)."""

    arrived: list[tuple[int, float]] = field(default_factory=list)  # (last sample + 1, time)
    written: list[tuple[int, float]] = field(default_factory=list)  # (frame, time)

    def latencies_ms(self, samples_per_frame: int) -> list[float]:
        out, j = [], 0
        for end, t in self.arrived:
            last_frame = (end - 1) // samples_per_frame
            while j < len(self.written) and self.written[j][0] < last_frame:
                j += 1
            if j < len(self.written):
                out.append((self.written[j][1] - t) * 1000)
        return out


class Session:
    def __init__(self, av: Avatar, sink, sample_rate: int | None = None, motion: PlanCfg | None = None,
                 lookahead_s: float = LIVE_LOOKAHEAD_S, batch_size: int = LIVE_BATCH):
        """sample_rate: the sound fed (default: the rate the clone's audio features were computed at)."""
        if av.pool is None:
            raise ClonetrainError(f"package {av.version} of {av.clone} has no motion library (made before it existed)",
                                  f"re-package it: python -m clonetrain stage=package clone={av.clone} force=true")
        self.spec = FeatureSpec.from_dict(av.mel)
        sample_rate = sample_rate or self.spec.sample_rate
        self.av, self.sink, self.sr = av, sink, sample_rate
        self.cfg = motion or PlanCfg()
        self.spf = sample_rate // av.fps  # samples per frame
        if self.spf * av.fps != sample_rate:
            raise ClonetrainError(f"{sample_rate} Hz does not divide into {av.fps} frames per second",
                                  "use 16000 Hz speech (ingest.sample_rate) with 25 fps footage")
        self.lookahead = int(round(lookahead_s * sample_rate))
        self.batch_size = batch_size
        self.hop = av.mel["hop_length"]
        # Sound kept behind the next frame: the mel windows reach 0.1 s back, Whisper's live window a few seconds.
        self.behind = int(round((whisper.LIVE_CONTEXT_S + 1 if self.spec.encoder == "whisper" else 1) * sample_rate))
        self.planner = Planner(av.pool, self.cfg)
        self.audio = np.zeros(0, np.float32)   # the session's sound from sample `base` on
        self.base = 0
        self.received = 0                      # samples of speech received (the timeline's end)
        self.voice: list[bool] = []            # per frame of the timeline: voice (Silero), as far as received
        self.frame = 0                         # next frame to write
        self.shown: list[int] = []             # the footage (pool) frame under each frame written
        self.timing = Timing()
        from silero_vad import load_silero_vad

        self._vad = load_silero_vad(onnx=False)
        self._vad_pending = np.zeros(0, np.float32)
        self._vad_probs: list[float] = []
        self._warm_up()

    def _warm_up(self) -> None:
        """One frame through every step before the first chunk arrives: lazy imports and first calls (librosa's
        kernels, the generator's first pass) would otherwise land on the first chunk's latency."""
        silence = np.zeros(self.sr // 2, np.float32)
        windows = speech_windows(self.av.mel, silence, self.sr, self.av.fps, 1)
        picture = self.av.frames.frame(0)
        generate(self.av.generator, self.av.reference, self.av.crop(0, picture)[None], windows, 1)

    # -- input ------------------------------------------------------------------------------------------------
    def say(self, pcm: np.ndarray) -> None:
        """Queue speech (16 kHz mono float32) after what is queued."""
        pcm = np.asarray(pcm, np.float32).reshape(-1)
        self.audio = np.concatenate([self.audio, pcm])
        self.received += len(pcm)
        self._listen(pcm)
        self.timing.arrived.append((self.received, time.perf_counter()))

    def interrupt(self) -> None:
        """Drop the queued speech not yet shown: the clone stops mid-word and goes back to listening footage
        (the planner cuts only where the pose matches, so the switch shows no jump)."""
        keep = self.frame * self.spf
        self.audio = self.audio[: max(0, keep - self.base)]
        self.received = keep
        self.voice = self.voice[: self.frame]
        whole = keep // VAD_WINDOW
        self._vad_probs = self._vad_probs[:whole]
        self._vad_pending = self.audio[max(0, whole * VAD_WINDOW - self.base) :].copy()
        self._vad.reset_states()
        self.timing.arrived = [(e, t) for e, t in self.timing.arrived if e <= keep]

    def _listen(self, pcm: np.ndarray) -> None:
        import torch

        self._vad_pending = np.concatenate([self._vad_pending, pcm])
        n = len(self._vad_pending) // VAD_WINDOW
        with torch.no_grad():
            for i in range(n):
                win = torch.from_numpy(self._vad_pending[i * VAD_WINDOW : (i + 1) * VAD_WINDOW])
                self._vad_probs.append(float(self._vad(win, self.sr)))
        self._vad_pending = self._vad_pending[n * VAD_WINDOW :]
        # A frame is voiced when a Silero window centred in it says so (windows run from sample 0 on).
        while (len(self.voice) + 1) * self.spf <= len(self._vad_probs) * VAD_WINDOW:
            f = len(self.voice)
            lo = int(np.ceil(f * self.spf / VAD_WINDOW - 0.5))
            hi = int(np.ceil((f + 1) * self.spf / VAD_WINDOW - 0.5))
            probs = self._vad_probs[lo:hi]
            self.voice.append(max(probs) >= 0.5 if probs else (self.voice[-1] if self.voice else False))

    # -- output -----------------------------------------------------------------------------------------------
    def ready(self, flush: bool = False) -> int:
        """How many frames can be written now: their sound and the lookahead after it have arrived (`flush`:
        no more speech is coming for now, so the rest is padded with silence)."""
        if flush:
            return max(0, -(-self.received // self.spf) - self.frame)
        return max(0, (self.received - self.lookahead) // self.spf - self.frame)

    def pump(self, flush: bool = False) -> int:
        """Write every frame that is ready; returns how many."""
        n = self.ready(flush)
        for i in range(0, n, self.batch_size):
            self._write(min(self.batch_size, n - i))
        return n

    def idle(self, seconds: float) -> int:
        """Nothing to say for `seconds`: silence goes out, with listening footage."""
        self.pump(flush=True)
        self.say(np.zeros(int(round(seconds * self.sr)), np.float32))
        return self.pump(flush=True)

    def _labels(self, k: int, n: int) -> np.ndarray:
        """Talking or not for frames k.. as far as the queued speech says (short pauses bridged, as render)."""
        known = np.array(self.voice[max(0, k - 25) :], bool)
        if known.size == 0:
            return np.zeros(1, bool)
        bridged = close_gaps(known, int(round(self.cfg.min_pause_s * self.av.fps)))
        ahead = bridged[k - max(0, k - 25) :]
        return ahead if ahead.size else np.zeros(1, bool)

    def _windows(self, k0: int, n: int) -> np.ndarray:
        """What the generator hears for frames k0..k0+n-1: render's own speech_windows, over the session's sound
        from a little before them (a start on both the frame and the hop grid keeps every window where render
        would put it; the margin keeps the STFT's edge out of them). Whisper: its live form (_recent_windows)."""
        if self.spec.encoder != "mel":
            return self._recent_windows(k0, n)
        grid = int(np.lcm(self.spf, self.hop))
        s0 = max(0, (k0 * self.spf - self.sr // 4) // grid * grid)
        s1 = (k0 + n) * self.spf + self.lookahead + self.sr // 4
        seg = self.audio[max(0, s0 - self.base) : max(0, s1 - self.base)]
        seg = np.pad(seg, (0, max(0, (s1 - s0) - len(seg))))
        first = s0 // self.spf
        return speech_windows(self.av.mel, seg, self.sr, self.av.fps, k0 + n - first)[k0 - first :]

    def _recent_windows(self, k0: int, n: int) -> np.ndarray:
        """Whisper's live form (models.inference.recent_windows) over the sound received so far."""
        return recent_windows(self.spec, self._sound, k0, n, self.av.fps, self.sr, self.received, self.lookahead)

    def _sound(self, s0: int, s1: int) -> np.ndarray:
        """Samples s0..s1 of the session's timeline: silence before its start, past what it keeps or has received."""
        return cut_padded(self.audio, self.base, s0, s1)

    def _write(self, n: int) -> None:
        av, k0 = self.av, self.frame
        labels = self._labels(k0, n)
        steps = [self.planner.step(labels[i:] if i < len(labels) else labels[-1:]) for i in range(n)]
        jobs = [(i, src) for i, (src, _, _) in enumerate(steps)] + [(i, b) for i, (_, b, _) in enumerate(steps) if b >= 0]
        pictures = {src: av.frames.frame(src) for _, src in jobs}
        mels = self._windows(k0, n)
        heard = np.stack([mels[i] for i, _ in jobs])
        faces = generate(av.generator, av.reference, np.stack([av.crop(src, pictures[src]) for _, src in jobs]),
                         heard, len(jobs))
        faces = av.detail(faces, n, heard)
        done = {job: paste(pictures[job[1]], face, av.squares[job[1]]) for job, face in zip(jobs, faces)}
        for i, (src, fade_from, weight) in enumerate(steps):
            frame = done[(i, src)]
            if fade_from >= 0:
                frame = (weight * done[(i, fade_from)] + (1 - weight) * frame).round().astype(np.uint8)
            k = k0 + i
            pcm = self.audio[k * self.spf - self.base : (k + 1) * self.spf - self.base]
            pcm = np.pad(pcm, (0, self.spf - len(pcm)))
            self.sink.write(burn_label(frame), pcm)
            self.shown.append(int(src))
            self.timing.written.append((k, time.perf_counter()))
        self.frame = k0 + n
        # Keep the sound the next frames' features reach back to (`behind`), drop the rest.
        drop = max(0, self.frame * self.spf - self.behind - self.base)
        if drop > self.sr:
            self.audio, self.base = self.audio[drop:], self.base + drop

    def close(self) -> None:
        self.pump(flush=True)
        self.sink.close()

    def __enter__(self) -> "Session":
        return self

    def __exit__(self, exc_type, *rest) -> None:
        if exc_type is None:
            self.close()
        else:
            abort = getattr(self.sink, "abort", None)
            if abort:
                abort()
