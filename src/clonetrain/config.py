"""Typed config schema. Registered in Hydra's ConfigStore so a misspelled key fails at compose time.

conf/config.yaml composes on top of `base_config`; every field here can be overridden on the command line,
e.g. `python -m clonetrain stage=faces clone=anna faces.crop_scale=1.8`.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path

from hydra.core.config_store import ConfigStore
from omegaconf import MISSING, OmegaConf


def default_data_root() -> str:
    """$CLONETRAIN_DATA, else the project's data/ (beside pyproject.toml), else ./data."""
    env = os.environ.get("CLONETRAIN_DATA")
    if env:
        return env
    project = Path(__file__).resolve().parents[2]
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
    backend: str = "mediapipe"
    smooth_window: int = 5
    # FAN only: a file or a folder holding 2DFAN4-11f355bf06.pth.tar; empty means the torch hub cache.
    fan_weights: str = ""
    device: str = "auto"
    batch_size: int = 32


@dataclass
class AudioCfg:
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
    # The mouth moves about 100 ms before the sound it makes, so in-sync footage peaks at this lag
    # (measured: 2.41 frames on talk_man_60s, 2.43 on talk_may_13s). Offsets are reported relative to it.
    mouth_lead_frames: float = 2.4
    # Below this much speech in a take its offset estimate is too noisy to act on.
    min_speech_for_offset_s: float = 10.0
    f0_min: float = 65.0
    f0_max: float = 400.0


@dataclass
class ReportCfg:
    thumbnails: int = 10


@dataclass
class Config:
    stage: str = "all"
    clone: str = MISSING
    force: bool = False
    paths: PathsCfg = field(default_factory=PathsCfg)
    ingest: IngestCfg = field(default_factory=IngestCfg)
    faces: FacesCfg = field(default_factory=FacesCfg)
    landmarks: LandmarksCfg = field(default_factory=LandmarksCfg)
    audio: AudioCfg = field(default_factory=AudioCfg)
    report: ReportCfg = field(default_factory=ReportCfg)


def register() -> None:
    if not OmegaConf.has_resolver("clonetrain_data_root"):
        OmegaConf.register_new_resolver("clonetrain_data_root", default_data_root)
    cs = ConfigStore.instance()
    cs.store(name="base_config", node=Config)
