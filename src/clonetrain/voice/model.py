"""The person's voice model: speech-to-speech conversion by nearest-neighbour matching (kNN-VC style).

What is said is carried by Whisper base's middle-layer features (multilingual, little of who says it); who says
it by the person's own spectral envelopes. Every 20 ms frame of the source is matched to its k nearest frames of
the person's speech by cosine similarity of those features, and the person's mel-cepstra at the matched frames
(WORLD, 5 ms) are averaged. Each side's features are centred on their own mean over speech first: what stays
the same through a recording (the speaker, the room) moves the mean, so the matches follow what is said. The pitch
is the person's own at the matched frames, smoothed over 100 ms and put on the source's voicing (or, with
f0="moved", the source's melody at the person's mean and spread of log-F0); the aperiodicity (breathiness,
noise) is the source's own. WORLD synthesises the result. Speech from the TTS converts with settings of its own
(tts_k, tts_gv_strength, tts_f0: its melody moved; tts_context: each frame matched with its neighbours' features
beside its own), and an engine may bring its own on top (for_tts).

The model is one .npz (+ nothing else): the person's features and envelopes, the pitch statistics and the
settings. It loads with numpy alone; converting needs clonetrain.audio_analysis.whisper (torch) and pyworld, no training
code.

    vm = VoiceModel.build(wav_16k, segments=[(0.0, 41.2), ...])
    vm.save("voice.npz"); vm = VoiceModel.load("voice.npz")
    out = vm.convert(actor_wav_16k)                 # 16 kHz float32, the same length
    out = vm.convert(tts_wav_16k, from_tts=True)    # a text render: the TTS's settings
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field, replace
from pathlib import Path

import numpy as np

from clonetrain.core.errors import ClonetrainError
from clonetrain.voice import world

SAMPLE_RATE = 16000
FEATURES_PER_SECOND = 50
SUB = 4  # WORLD frames (5 ms) per feature frame (20 ms)
OFFSETS = np.arange(-SUB // 2, SUB // 2)  # WORLD frames 4j-2 .. 4j+1 are nearest to feature frame j
FORMAT = "clonetrain.voice/1"
AP_BANDS = 32


def ap_to_bands(ap: np.ndarray) -> np.ndarray:
    edges = np.linspace(0, ap.shape[-1], AP_BANDS + 1).astype(int)
    return np.stack([ap[..., a:b].mean(-1) for a, b in zip(edges[:-1], edges[1:])], -1)


def bands_to_ap(bands: np.ndarray, bins: int) -> np.ndarray:
    centres = (np.linspace(0, bins, AP_BANDS + 1)[:-1] + np.linspace(0, bins, AP_BANDS + 1)[1:]) / 2
    x = np.arange(bins)
    return np.stack([np.interp(x, centres, b) for b in bands]).clip(1e-6, 1.0)


@dataclass
class VoiceSettings:
    layers: tuple[int, ...] = (2,)
    k: int = 4
    # Speech from the TTS converts with settings of its own (its frames lie further from the person's), tuned for
    # the default engine, Kokoro, on the benchmark's sentences and twelve others together (README "The voice"):
    # 8 matches, 0.9 of the spread restored (gv below), its own melody at the person's pitch (tts_f0), and each
    # frame matched with its neighbours' features beside its own at weight 0.7 (tts_context: the sounds around
    # one tell the person's matching sound apart). Another engine brings its own (tts.PiperTTS.conversion).
    tts_k: int = 8
    subtract_silence: bool = True
    # "average": mean mel-cepstrum of the k matches (a geometric mean of envelopes: no smearing of formants
    # into a flat spectrum as a linear mean of envelopes does)
    level: str = "target"  # the loudness contour: the matched frames' (target) or the source's (source)
    # Global variance: averaging k matches flattens the envelope's movement; restore the person's per-coefficient
    # spread (over voiced frames), as statistical voice conversion does against over-smoothing.
    gv: bool = True
    # How much of that spread to restore: the exponent of the person's spread over the converted one (1: all of
    # it, 0: none). Speech converts best with all of it (a human drive at half: 0.912 -> 0.901); Piper's speech
    # with half, Kokoro's with 0.9 (poorer matches: the full restore amplifies their noise).
    gv_strength: float = 1.0
    tts_gv_strength: float = 0.9
    # Median over this many WORLD frames (5 ms) of the matched mel-cepstra: one wrong match among good ones
    # is a click of the wrong sound; a short median removes it without blurring the transitions. 1: off.
    smooth: int = 1
    aperiodicity: str = "source"  # source (the source's breathiness) | target (the matched frames', 32 bands)
    # Subtract each side's mean feature over its speech before matching (per utterance for the source, over the
    # person's pool for the person): speaker and channel offsets cancel, the matches follow the content.
    normalise_content: bool = True
    # matched: the person's own pitch at the matched frames (intonation detail in their voice), smoothed over
    # f0_smooth WORLD frames, voiced where the source is; moved: the source's melody, moved to the person's
    # mean and spread of log-F0.
    f0: str = "matched"
    f0_smooth: int = 20
    tts_f0: str = "moved"
    tts_context: float = 0.7


class VoiceModelError(ClonetrainError):
    """A voice model file that is missing, damaged or from another format."""


def _frames_in(segments, n: int) -> np.ndarray:
    t = np.arange(n) / FEATURES_PER_SECOND
    mask = np.zeros(n, bool)
    for s, e in segments:
        mask |= (t >= s) & (t < e)
    return mask


def _normalise(x: np.ndarray) -> np.ndarray:
    x = np.asarray(x, np.float32)
    return x / (np.linalg.norm(x, axis=1, keepdims=True) + 1e-8)


def neighbours(frames: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(previous, next) row of each pool row: the row of the adjacent feature frame, or the row itself where the
    speech was cut (a segment's edge)."""
    i = np.arange(len(frames))
    prev = np.where(np.r_[False, np.diff(frames) == 1], i - 1, i)
    nxt = np.where(np.r_[np.diff(frames) == 1, False], i + 1, i)
    return prev, nxt


def with_context(x: np.ndarray, prev: np.ndarray, nxt: np.ndarray, weight: float) -> np.ndarray:
    """Unit rows of [weight * previous, own, weight * next] features (x: unit rows)."""
    return _normalise(np.concatenate([weight * x[prev], x, weight * x[nxt]], 1))


def log_f0_stats(f0: np.ndarray) -> tuple[float, float]:
    v = f0[f0 > 0]
    if len(v) < 10:
        return float("nan"), float("nan")
    lf = np.log(v)
    return float(lf.mean()), float(lf.std())


def speech_frames(mcep: np.ndarray, n: int) -> np.ndarray:
    """(n,) which 20 ms feature frames hold sound within ~26 dB of the loud end (c0 within 3 of its 90th
    percentile): the frames whose content features the mean is taken over (silence would pull it)."""
    c0 = np.asarray(mcep[:, 0], np.float32)
    loud = c0 > np.percentile(c0, 90) - 3.0
    w = np.zeros(n * SUB, bool)
    w[: min(len(loud), n * SUB)] = loud[: n * SUB]
    frames = w.reshape(n, SUB).any(1)
    return frames if frames.sum() > 10 else np.ones(n, bool)


def move_f0(f0: np.ndarray, mean: float, std: float) -> np.ndarray:
    """The source's melody with the target's mean and spread of log-F0 (unvoiced stays 0)."""
    m, s = log_f0_stats(f0)
    if not np.isfinite(m) or not np.isfinite(mean):
        return f0
    out = np.zeros_like(f0)
    v = f0 > 0
    out[v] = np.exp((np.log(f0[v]) - m) / max(s, 1e-3) * std + mean)
    return out


@dataclass
class VoiceModel:
    features: np.ndarray   # (N, d) float16 unit-norm content features of the person's speech frames
    mcep: np.ndarray       # (N, SUB, ORDER + 1) float32 mel-cepstra of the 4 WORLD frames around each
    log_f0_mean: float
    log_f0_std: float
    settings: VoiceSettings = field(default_factory=VoiceSettings)
    info: dict = field(default_factory=dict)
    gv_std: np.ndarray | None = None  # (ORDER + 1,) the person's spread of each mel-cepstrum over voiced frames
    ap_bands: np.ndarray | None = None  # (N, SUB, AP_BANDS) float16: the person's aperiodicity, coarse
    log_f0: np.ndarray | None = None  # (N, SUB) float16 log-F0 of the person's frames (0: unvoiced)
    frames: np.ndarray | None = None  # (N,) int32 each row's feature frame in the built speech: who its neighbours are
    # Whether a TTS engine's own conversion settings apply (for_tts). A file saved before engines brought their
    # own converts text as it was built.
    engine_settings: bool = True

    # ---- building -------------------------------------------------------------------------------------------
    @classmethod
    def build(cls, wav: np.ndarray, segments, settings: VoiceSettings | None = None,
              analysis: world.Analysis | None = None, features: np.ndarray | None = None) -> "VoiceModel":
        """From 16 kHz speech and the (start, end) seconds of the speech to learn from (the rest is ignored).
        `analysis`/`features` of the whole `wav` may be passed when already computed."""
        from clonetrain.audio_analysis import whisper

        s = settings or VoiceSettings()
        feats = features if features is not None else whisper.encode(wav, layers=s.layers,
                                                                      subtract_silence=s.subtract_silence)
        ana = analysis or world.analyse(wav)
        n = min(len(feats), (len(ana.f0) - 2) // SUB)
        keep = np.flatnonzero(_frames_in(segments, n))
        if len(keep) < FEATURES_PER_SECOND:
            raise ClonetrainError(f"only {len(keep) / FEATURES_PER_SECOND:.1f} s of speech to build a voice from",
                                  "add takes of the person speaking")
        sub = np.clip(keep[:, None] * SUB + OFFSETS[None], 0, len(ana.f0) - 1)
        w_mask = np.zeros(len(ana.f0), bool)
        w_mask[sub.ravel()] = True
        mean, std = log_f0_stats(ana.f0[w_mask])
        voiced = w_mask & (ana.f0 > 0)
        pool = feats[keep]
        if s.normalise_content:
            pool = pool - pool.mean(0)
        f0_sub = ana.f0[sub]
        log_f0 = np.where(f0_sub > 0, np.log(np.maximum(f0_sub, 1.0)), 0.0).astype(np.float16)
        return cls(features=_normalise(pool).astype(np.float16), mcep=ana.mcep[sub].astype(np.float32),
                   log_f0=log_f0,
                   log_f0_mean=mean, log_f0_std=std, settings=s, gv_std=ana.mcep[voiced].std(0),
                   ap_bands=ap_to_bands(ana.ap[sub]).astype(np.float16) if s.aperiodicity == "target" else None,
                   frames=keep.astype(np.int32),
                   info={"frames": int(len(keep)), "speech_s": len(keep) / FEATURES_PER_SECOND})

    # ---- converting -----------------------------------------------------------------------------------------
    def for_tts(self, conversion: dict) -> "VoiceModel":
        """This model converting a TTS engine's speech with that engine's own settings (tts_k, tts_f0, ...;
        `TextToSpeech.conversion`; empty: the model's)."""
        if not conversion or not self.engine_settings:
            return self
        return replace(self, settings=replace(self.settings, **conversion))

    def match(self, source_features: np.ndarray, source_mcep: np.ndarray | None = None,
              k: int | None = None, context: float = 0.0) -> np.ndarray:
        """(T, k) indices of each source frame's k nearest frames of the person (cosine similarity; k: the
        settings' k by default). `source_mcep` (the source's WORLD mel-cepstra) tells its speech frames apart for
        the centring. `context` > 0: each frame is matched with its neighbours' features beside its own, at that
        weight (a model built before the person's frame positions were kept matches without)."""
        src = np.asarray(source_features, np.float32)
        if self.settings.normalise_content:
            speech = speech_frames(source_mcep, len(src)) if source_mcep is not None else slice(None)
            src = src - src[speech].mean(0)
        src = _normalise(src)
        tgt = self.features.astype(np.float32)
        if context > 0 and self.frames is not None:
            t = np.arange(len(src))
            src = with_context(src, np.maximum(t - 1, 0), np.minimum(t + 1, len(src) - 1), context)
            tgt = with_context(tgt, *neighbours(self.frames), context)
        k = min(k or self.settings.k, len(tgt))
        out = np.empty((len(src), k), np.int64)
        for a in range(0, len(src), 2048):  # bounded memory for long sources
            sims = src[a : a + 2048] @ tgt.T
            out[a : a + 2048] = np.argpartition(-sims, k - 1, axis=1)[:, :k]
        return out

    def convert_analysis(self, source: world.Analysis, source_features: np.ndarray,
                         from_tts: bool = False) -> world.Analysis:
        """The converted speech's (f0, mcep, ap), frame for frame with the source's WORLD analysis.
        `from_tts`: the source is synthetic speech (a text render), converted with the TTS's settings."""
        st = self.settings
        idx = self.match(source_features, source.mcep, st.tts_k if from_tts else st.k,
                         st.tts_context if from_tts else 0.0)
        n_w = len(source.f0)
        w = np.arange(n_w)
        j = np.clip(np.rint(w / SUB).astype(int), 0, len(idx) - 1)
        q = np.clip(w - SUB * j, OFFSETS[0], OFFSETS[-1]) - OFFSETS[0]
        mcep = self.mcep[idx[j], q[:, None]].mean(axis=1)  # (W, k, D) -> (W, D)
        ap = source.ap
        if self.settings.aperiodicity == "target" and self.ap_bands is not None:
            bands = self.ap_bands[idx[j], q[:, None]].astype(np.float32).mean(axis=1)
            ap = bands_to_ap(bands, source.ap.shape[1])
        if self.settings.smooth > 1:
            from scipy.ndimage import median_filter

            mcep = median_filter(mcep, size=(self.settings.smooth, 1), mode="nearest")
        if self.settings.gv and self.gv_std is not None:
            voiced = source.f0 > 0
            if voiced.sum() > 10:
                mu, sd = mcep[voiced].mean(0), mcep[voiced].std(0) + 1e-6
                scale = np.ones_like(sd)
                strength = self.settings.tts_gv_strength if from_tts else self.settings.gv_strength
                scale[1:] = (np.asarray(self.gv_std, np.float32)[1:] / sd[1:]) ** strength
                mcep = mu + (mcep - mu) * scale
        if self.settings.level == "source":
            voiced = source.f0 > 0
            ref = voiced if voiced.any() else slice(None)
            mcep[:, 0] = source.mcep[:, 0] - source.mcep[ref, 0].mean() + self.mcep[..., 0].mean()
        f0 = move_f0(source.f0, self.log_f0_mean, self.log_f0_std)
        if (st.tts_f0 if from_tts else st.f0) == "matched" and self.log_f0 is not None:
            f0 = self._matched_f0(idx[j], q, f0)
        return world.Analysis(f0=f0, mcep=mcep, ap=ap)

    def _matched_f0(self, rows: np.ndarray, q: np.ndarray, moved: np.ndarray) -> np.ndarray:
        """The person's log-F0 averaged over the voiced ones of the matched frames, gaps bridged, smoothed;
        voiced where the source is voiced (its voicing follows its words)."""
        from scipy.ndimage import uniform_filter1d

        lf = self.log_f0[rows, q[:, None]].astype(np.float32)  # (W, k)
        n_voiced = (lf > 0).sum(1)
        has = n_voiced > 0
        voiced = moved > 0
        if not has.any() or not voiced.any():
            return moved
        mean = lf.sum(1)[has] / n_voiced[has]
        x = np.arange(len(lf))
        curve = uniform_filter1d(np.interp(x, x[has], mean), max(1, self.settings.f0_smooth), mode="nearest")
        return np.where(voiced, np.exp(curve), 0.0)

    def pitch_moved_only(self, wav: np.ndarray) -> np.ndarray:
        """The evaluation's baseline: `wav` resynthesised with only its pitch moved to the person's mean and
        spread (its own envelopes: the same voice at the person's pitch)."""
        a = world.analyse(np.asarray(wav, np.float32))
        return world.synthesise(move_f0(a.f0, self.log_f0_mean, self.log_f0_std), a.mcep, a.ap)

    def convert(self, wav: np.ndarray, from_tts: bool = False) -> np.ndarray:
        """Any speaker's 16 kHz speech, in the person's voice (16 kHz float32, same length); `from_tts` when it
        was spoken by the TTS."""
        from clonetrain.audio_analysis import whisper

        wav = np.asarray(wav, np.float32)
        feats = whisper.encode(wav, layers=self.settings.layers, subtract_silence=self.settings.subtract_silence)
        source = world.analyse(wav)
        c = self.convert_analysis(source, feats, from_tts)
        out = world.synthesise(c.f0, c.mcep, c.ap)
        out = np.pad(out[: len(wav)], (0, max(0, len(wav) - len(out))))
        peak = float(np.abs(out).max())
        return out / peak * 0.9 if peak > 0.99 else out

    # ---- files ----------------------------------------------------------------------------------------------
    def save(self, path: str | Path) -> None:
        from clonetrain.core.workspace import atomic_path

        meta = {"format": FORMAT, "log_f0_mean": self.log_f0_mean, "log_f0_std": self.log_f0_std,
                "settings": {**self.settings.__dict__, "layers": list(self.settings.layers)}, "info": self.info,
                "gv_std": None if self.gv_std is None else [float(v) for v in self.gv_std]}
        with atomic_path(path) as tmp:
            with open(tmp, "wb") as f:
                extra = {name: a for name, a in (("ap_bands", self.ap_bands), ("log_f0", self.log_f0),
                                                 ("frames", self.frames)) if a is not None}
                np.savez(f, features=self.features, mcep=self.mcep, meta=np.array(json.dumps(meta)), **extra)

    @classmethod
    def load(cls, path: str | Path) -> "VoiceModel":
        path = Path(path)
        if not path.is_file():
            raise VoiceModelError(f"no voice model at {path}", "build it: python -m clonetrain stage=voice clone=...")
        try:
            with np.load(path, allow_pickle=False) as z:
                meta = json.loads(str(z["meta"]))
                features, mcep = z["features"], z["mcep"]
                ap_bands = z["ap_bands"] if "ap_bands" in z.files else None
                log_f0 = z["log_f0"] if "log_f0" in z.files else None
                frames = z["frames"] if "frames" in z.files else None
        except (OSError, ValueError, KeyError) as err:
            raise VoiceModelError(f"{path} is not a readable voice model ({err})", "rebuild it with stage=voice") from None
        if meta.get("format") != FORMAT:
            raise VoiceModelError(f"{path} has format {meta.get('format')!r}, expected {FORMAT}", "rebuild it")
        # Models saved before content centring, matched pitch and the TTS's own settings convert as they were built.
        old = meta["settings"]
        st = {"normalise_content": False, "f0": "moved", "tts_gv_strength": 1.0, "tts_k": old.get("k", 4),
              "tts_f0": old.get("f0", "moved"), "tts_context": 0.0, **old}
        return cls(features=features, mcep=mcep, log_f0_mean=meta["log_f0_mean"], log_f0_std=meta["log_f0_std"],
                   settings=VoiceSettings(**{**st, "layers": tuple(st["layers"])}), info=meta.get("info", {}),
                   gv_std=None if meta.get("gv_std") is None else np.asarray(meta["gv_std"], np.float32),
                   ap_bands=ap_bands, log_f0=log_f0, frames=frames, engine_settings="tts_context" in old)
