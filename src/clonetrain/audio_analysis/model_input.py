"""What the lip-sync model hears: the audio features, their normalisation and the window around each video
frame. The ONE place that turns sound into model input, used by the audio stage (compute), training and
evaluation (windows of the cached features) and render (compute + windows for new speech), so they cannot drift.

Two encoders (audio_features.encoder):
    mel      log-mel dB (80 bands, hop 200: 80 frames/s, 3.2 per video frame), (x + 40) / 40; window 16 = 0.2 s
    whisper  Whisper-base encoder layers (audio_features.whisper_layers, stacked; layer 2 by default), 50 frames/s
             (2 per video frame),
             one fixed 30 s window grid from sample 0, minus a silent window's encoding, / whisper_scale;
             window 10 = 0.2 s

A FeatureSpec is stored beside the features (audio/features.json), in the checkpoint (as its signature) and in
the package manifest ("audio"), so a runtime reproduces the input exactly.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field

import numpy as np

from clonetrain.core.config import AudioCfg, IngestCfg
from clonetrain.core.errors import ClonetrainError, UpstreamMissingError

WINDOW_SECONDS = 0.2  # the sound around a frame the model hears: 5 video frames at 25 fps


@dataclass(frozen=True)
class FeatureSpec:
    encoder: str = "mel"
    dims: int = 80                 # channels per feature frame
    per_second: float = 80.0       # feature frames per second
    window: int = 16               # feature frames per model input
    center: float = -40.0          # normalised = (raw - center) / scale
    scale: float = 40.0
    sample_rate: int = IngestCfg.sample_rate  # the sound ingest extracts (config.IngestCfg)
    # mel: the audio_features defaults, set in one place (config.AudioCfg)
    n_mels: int = AudioCfg.n_mels
    n_fft: int = AudioCfg.n_fft
    hop_length: int = AudioCfg.hop_length
    win_length: int = AudioCfg.win_length
    fmin: float = AudioCfg.fmin
    fmax: float = AudioCfg.fmax
    # whisper
    whisper_model: str = AudioCfg.whisper_model
    layers: tuple[int, ...] = field(default_factory=tuple)
    subtract_silence: bool = True

    @property
    def signature(self) -> str:
        """What a checkpoint must match: the encoder and, for Whisper, the model and layers."""
        if self.encoder == "mel":
            return "mel"
        return f"whisper-{self.whisper_model}:{','.join(map(str, self.layers))}" + ("" if self.subtract_silence
                                                                                     else ":raw")

    def to_dict(self) -> dict:
        d = dataclasses.asdict(self)
        d["layers"] = list(self.layers)
        return d

    @classmethod
    def from_dict(cls, d: dict) -> "FeatureSpec":
        """Tolerates the older package manifests, which stored the audio_features settings of a mel clone."""
        names = {f.name for f in dataclasses.fields(cls)}
        kept = {k: v for k, v in d.items() if k in names}
        if "layers" in kept:
            kept["layers"] = tuple(int(i) for i in kept["layers"] or ())
        if kept.get("encoder", "mel") == "mel":
            kept.setdefault("dims", kept.get("n_mels", 80))
            kept.setdefault("per_second", kept.get("sample_rate", 16000) / kept.get("hop_length", 200))
        return cls(**kept)

    @classmethod
    def from_cfg(cls, audio_cfg, sample_rate: int) -> "FeatureSpec":
        """The spec the audio stage computes under `audio_features` (and ingest.sample_rate)."""
        c = audio_cfg
        mel = dict(n_mels=int(c.n_mels), n_fft=int(c.n_fft), hop_length=int(c.hop_length),
                   win_length=int(c.win_length), fmin=float(c.fmin), fmax=float(c.fmax), sample_rate=int(sample_rate))
        if c.encoder == "mel":
            per_second = sample_rate / c.hop_length
            return cls(encoder="mel", dims=int(c.n_mels), per_second=per_second,
                       window=int(round(WINDOW_SECONDS * per_second)), **mel)
        if c.encoder == "whisper":
            from clonetrain.audio_analysis import whisper

            if sample_rate != whisper.SAMPLE_RATE:
                raise ClonetrainError(f"audio_features.encoder=whisper needs 16 kHz sound, ingest.sample_rate is "
                                      f"{sample_rate}", "use ingest.sample_rate=16000 (the default)")
            layers = tuple(int(i) for i in c.whisper_layers)
            if not layers:
                raise ClonetrainError("audio_features.whisper_layers is empty", "e.g. audio_features.whisper_layers=[2,3,4]")
            return cls(encoder="whisper", dims=len(layers) * whisper.WIDTHS[c.whisper_model],
                       per_second=float(whisper.FEATURES_PER_SECOND),
                       window=int(round(WINDOW_SECONDS * whisper.FEATURES_PER_SECOND)), center=0.0,
                       scale=float(c.whisper_scale), whisper_model=str(c.whisper_model), layers=layers,
                       subtract_silence=bool(c.whisper_subtract_silence), **mel)
        raise ClonetrainError(f"unknown audio_features.encoder {c.encoder!r}", "use audio_features.encoder=mel or whisper")

    def compute(self, wav: np.ndarray, sr: int) -> np.ndarray:
        """(T, dims) raw features of `wav` (mono, `sr` Hz), frame t centred on time t / per_second."""
        if sr != self.sample_rate:
            raise ClonetrainError(f"the sound is at {sr} Hz, the features are defined at {self.sample_rate} Hz",
                                  "resample the sound first (ingest and render decode at ingest.sample_rate)")
        if self.encoder == "mel":
            from clonetrain.audio_analysis import features

            return features.log_mel(wav, sr, self.n_fft, self.hop_length, self.win_length, self.n_mels, self.fmin,
                                    self.fmax)
        from clonetrain.audio_analysis import whisper

        return whisper.encode(wav, layers=self.layers, name=self.whisper_model,
                              subtract_silence=self.subtract_silence)

    def normalise(self, raw: np.ndarray) -> np.ndarray:
        return ((raw - self.center) / self.scale).astype(np.float32)

    def frames_per_video_frame(self, fps: float) -> float:
        return self.per_second / fps

    def window_at(self, feats: np.ndarray, centre_frame: float, fps: float) -> np.ndarray:
        """(dims, window) of normalised `feats` around the time of video frame position `centre_frame` (a frame's
        centre is at index + 0.5); past either end the edge frame is repeated."""
        start = int(round(centre_frame * self.frames_per_video_frame(fps) - self.window / 2))
        idx = np.clip(np.arange(start, start + self.window), 0, len(feats) - 1)
        return feats[idx].T

    def windows(self, feats: np.ndarray, centre_frames, fps: float) -> np.ndarray:
        """(n, dims, window) for several centres."""
        return np.stack([self.window_at(feats, c, fps) for c in centre_frames])

    def model_input(self, wav: np.ndarray, sr: int) -> np.ndarray:
        """Normalised features of new speech (render, cross-speaker evaluation)."""
        return self.normalise(self.compute(wav, sr))

    def recent_input(self, wav: np.ndarray, sr: int) -> np.ndarray:
        """Normalised features of a short stretch of speech as it arrives (the live session): log-mel as render
        computes it; Whisper in its live form (whisper.encode_recent), near the grid's but not the same."""
        if self.encoder == "mel":
            return self.model_input(wav, sr)
        from clonetrain.audio_analysis import whisper

        return self.normalise(whisper.encode_recent(wav, layers=self.layers, name=self.whisper_model,
                                                    subtract_silence=self.subtract_silence))


def check_matches(spec: FeatureSpec, signature: str, dims: int, clone: str, what: str = "the model") -> None:
    """A model trained on one kind of features cannot hear another: say which rerun makes them agree."""
    if spec.signature == signature and spec.dims == dims:
        return
    if signature == "mel":
        fix = f"rerun: python -m clonetrain stage=audio clone={clone} audio_features.encoder=mel force=true"
        if spec.encoder == "mel":
            fix += f" audio_features.n_mels={dims}"
    else:
        model, layers = signature.removeprefix("whisper-").split(":")[:2]
        fix = (f"rerun: python -m clonetrain stage=audio clone={clone} audio_features.encoder=whisper "
               f"audio_features.whisper_model={model} audio_features.whisper_layers=[{layers}] force=true")
    raise FeatureMismatchError(f"clone {clone!r} was preprocessed with audio features {spec.signature} "
                               f"({spec.dims} channels), {what} expects {signature} ({dims} channels)", fix)


class FeatureMismatchError(UpstreamMissingError):
    """Features of one encoder given to a model trained on another."""
