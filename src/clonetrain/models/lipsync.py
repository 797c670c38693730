"""An audio-conditioned face inpainting generator in the spirit of Wav2Lip, and a SyncNet-style expert.

Generator input: a reference frame of the person and the target frame with its lower half masked (6 channels,
S x S), plus the audio features around the target frame (1 x channels x window, 0.2 s: 16 log-mel frames, or 10
Whisper frames; audio_analysis.model_input). Output: the target frame
with a mouth that matches the audio. The face is encoded by a U-Net encoder, the audio by a small conv net;
the decoder upsamples from their joint embedding using the face encoder's skips.

Expert: embeds the lower halves of `sync_frames` consecutive frames and the mel window spanning them; the
cosine of the two embeddings says whether mouth and sound are in sync.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from clonetrain.audio_analysis.model_input import FeatureSpec
from clonetrain.core.config import ModelCfg
from clonetrain.models.mouth_control import MouthControl

MEL_WINDOW = FeatureSpec.window  # feature frames per sample: 0.2 s at 80 mel frames per second


@dataclass(frozen=True)
class ModelSpec:
    """What a checkpoint records about its nets. The widths' defaults are model=small's, read from the one place
    that sets them (config.ModelCfg); every checkpoint stores all of them."""
    arch: str = ModelCfg.arch  # or "wav2lip": the public Wav2Lip nets (models/wav2lip.py); the widths below unused
    image_size: int = ModelCfg.image_size
    channels: int = ModelCfg.channels  # width of the first face-encoder level; every level below doubles it (capped)
    max_channels: int = ModelCfg.max_channels
    audio_dim: int = ModelCfg.audio_dim
    n_mels: int = FeatureSpec.dims  # channels of the audio features (mel bands, or Whisper layers x width)
    sync_frames: int = ModelCfg.sync_frames
    expert_dim: int = ModelCfg.expert_dim
    # The features the audio encoders hear (audio_analysis.model_input.FeatureSpec.signature): "mel" or e.g.
    # "whisper-base:2,3,4". Checked against the clone's features wherever the model meets them.
    audio_input: str = "mel"
    audio_window: int = MEL_WINDOW  # feature frames per input (0.2 s)
    # The generator also takes the mouth opening as an input (models.mouth_control); arch=clonetrain only.
    mouth_control: bool = ModelCfg.mouth_control


class Block(nn.Module):
    """conv + norm + ReLU; residual when the shape is kept."""

    def __init__(self, cin: int, cout: int, stride: int | tuple = 1, transpose: bool = False):
        super().__init__()
        if transpose:
            self.conv = nn.ConvTranspose2d(cin, cout, 3, stride, padding=1, output_padding=stride - 1 if isinstance(stride, int) else 0)
        else:
            self.conv = nn.Conv2d(cin, cout, 3, stride, padding=1)
        self.norm = nn.BatchNorm2d(cout)
        self.residual = cin == cout and stride == 1 and not transpose

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = self.norm(self.conv(x))
        return F.relu(y + x if self.residual else y)


def _widths(spec: ModelSpec, levels: int) -> list[int]:
    return [min(spec.channels * 2**i, spec.max_channels) for i in range(levels)]


class AudioEncoder(nn.Module):
    def __init__(self, spec: ModelSpec, out_dim: int):
        super().__init__()
        c = spec.channels
        self.net = nn.Sequential(
            Block(1, c), Block(c, c),
            Block(c, 2 * c, (3, 1)), Block(2 * c, 2 * c),
            Block(2 * c, 4 * c, 3), Block(4 * c, 4 * c),
            Block(4 * c, 8 * c, (3, 2)), Block(8 * c, 8 * c),
            nn.Conv2d(8 * c, out_dim, 1),
        )

    def forward(self, mel: torch.Tensor) -> torch.Tensor:  # (B, 1, n_mels, 16) -> (B, out_dim)
        return F.adaptive_avg_pool2d(self.net(mel), 1).flatten(1)


class Block1d(nn.Module):
    """conv over time + norm + ReLU; residual when the shape is kept."""

    def __init__(self, cin: int, cout: int, kernel: int = 3, stride: int = 1):
        super().__init__()
        self.conv = nn.Conv1d(cin, cout, kernel, stride, padding=kernel // 2)
        self.norm = nn.BatchNorm1d(cout)
        self.residual = cin == cout and stride == 1

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = self.norm(self.conv(x))
        return F.relu(y + x if self.residual else y)


class FeatureAudioEncoder(nn.Module):
    """Whisper features: every channel is a learned feature already, so convolve over time only, with the
    feature channels as input channels (a 2-D conv over them, as for a spectrogram, would assume an order)."""

    def __init__(self, spec: ModelSpec, out_dim: int):
        super().__init__()
        c = 8 * spec.channels
        self.net = nn.Sequential(
            Block1d(spec.n_mels, c, kernel=1), Block1d(c, c), Block1d(c, c, stride=2), Block1d(c, c),
            nn.Conv1d(c, out_dim, 1),
        )

    def forward(self, feats: torch.Tensor) -> torch.Tensor:  # (B, 1, dims, W) -> (B, out_dim)
        return self.net(feats.squeeze(1)).mean(-1)


def audio_encoder(spec: ModelSpec, out_dim: int) -> nn.Module:
    return AudioEncoder(spec, out_dim) if spec.audio_input == "mel" else FeatureAudioEncoder(spec, out_dim)


class Generator(nn.Module):
    def __init__(self, spec: ModelSpec):
        super().__init__()
        self.spec = spec
        levels = 1
        while spec.image_size // 2**levels > 3:
            levels += 1
        w = _widths(spec, levels + 1)  # level i works at image_size / 2**i
        self.down = nn.ModuleList([nn.Sequential(Block(6, w[0]), Block(w[0], w[0]))])
        for i in range(1, levels + 1):
            self.down.append(nn.Sequential(Block(w[i - 1], w[i], 2), Block(w[i], w[i])))
        self.bottom = spec.image_size // 2**levels  # 3 for 96 px
        self.audio = audio_encoder(spec, spec.audio_dim)
        self.fuse = nn.Sequential(nn.ConvTranspose2d(spec.audio_dim + w[levels], w[levels], self.bottom),
                                  nn.BatchNorm2d(w[levels]), nn.ReLU())
        if spec.mouth_control:
            self.mouth = MouthControl(spec.n_mels)
            # The opening, as a bias on the joint code. Zero at the start, so a base trained without a control
            # (its checkpoint has no such weights) behaves as it did until training teaches it the control.
            self.control = nn.Sequential(nn.Linear(1, 32), nn.ReLU(), nn.Linear(32, w[levels] * self.bottom**2))
            # ... and as a bias on every decoder level's features, so the control reaches the finer levels too
            self.control_levels = nn.ModuleList([nn.Linear(1, w[i - 1]) for i in range(levels, 0, -1)])
            for layer in (self.control[-1], *self.control_levels):
                nn.init.zeros_(layer.weight)
                nn.init.zeros_(layer.bias)
        self.up = nn.ModuleList()
        for i in range(levels, 0, -1):  # from level i to level i-1, concatenating the skip of level i
            self.up.append(nn.Sequential(Block(2 * w[i], w[i - 1], 2, transpose=True), Block(w[i - 1], w[i - 1])))
        self.out = nn.Sequential(Block(2 * w[0], w[0]), nn.Conv2d(w[0], 3, 1), nn.Sigmoid())

    def forward(self, faces: torch.Tensor, mels: torch.Tensor, control: torch.Tensor | None = None) -> torch.Tensor:
        """faces (B, 6, S, S) in [0, 1] (reference | masked target); mels (B, 1, channels, window) -> (B, 3, S, S).
        control (B,): the mouth opening to draw (a z-score); None: the one mouth_control predicts from the sound."""
        skips = []
        x = faces
        for layer in self.down:
            x = layer(x)
            skips.append(x)
        face_code = F.adaptive_avg_pool2d(x, 1)
        audio_code = self.audio(mels)[:, :, None, None]
        x = self.fuse(torch.cat([audio_code, face_code], 1))
        levels = [None] * len(self.up)
        if self.spec.mouth_control:
            opening = (self.mouth(mels) if control is None else control).to(x.dtype)[:, None]
            x = x + self.control(opening).view_as(x)
            levels = [layer(opening)[:, :, None, None] for layer in self.control_levels]
        for layer, skip, bias in zip(self.up, reversed(skips[1:]), levels):
            x = layer(torch.cat([x, skip], 1))
            if bias is not None:
                x = x + bias
        out = self.out(torch.cat([x, skips[0]], 1))
        # The upper half is known: keep it exactly, so all capacity goes to the mouth and the paste-back is seamless.
        half = out.shape[-2] // 2
        return torch.cat([faces[:, 3:6, :half], out[:, :, half:]], dim=2)


class SyncExpert(nn.Module):
    """Lower halves of sync_frames frames (3*T channels, S/2 x S) vs the mel window spanning them."""

    def __init__(self, spec: ModelSpec):
        super().__init__()
        self.spec = spec
        c, d = spec.channels, spec.expert_dim
        t = spec.sync_frames
        self.face = nn.Sequential(
            Block(3 * t, 2 * c), Block(2 * c, 4 * c, 2), Block(4 * c, 4 * c), Block(4 * c, 8 * c, 2),
            Block(8 * c, 8 * c), Block(8 * c, 16 * c, 2), Block(16 * c, 16 * c), nn.Conv2d(16 * c, d, 1),
        )
        self.audio = audio_encoder(spec, d)

    def embed(self, mouths: torch.Tensor, mels: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        f = F.normalize(F.relu(F.adaptive_avg_pool2d(self.face(mouths), 1).flatten(1)), dim=1)
        a = F.normalize(F.relu(self.audio(mels)), dim=1)
        return f, a

    def forward(self, mouths: torch.Tensor, mels: torch.Tensor) -> torch.Tensor:
        """Probability-like sync score in [0, 1] (cosine of non-negative unit vectors)."""
        f, a = self.embed(mouths, mels)
        return (f * a).sum(1).clamp(1e-6, 1 - 1e-6)


ARCHS = ("clonetrain", "wav2lip")


def _build(spec: ModelSpec, which: int) -> nn.Module:
    if spec.arch == "clonetrain":
        nets = (Generator, SyncExpert)
    elif spec.arch == "wav2lip":
        # Imported only when asked for, by an import statement: the stages' code hash (manifest.import_closure)
        # reads it, so an edit to the Wav2Lip nets reruns every stage that builds them.
        from clonetrain.models import wav2lip

        nets = (wav2lip.Wav2LipGenerator, wav2lip.Wav2LipExpert)
    else:
        raise ValueError(f"unknown model architecture {spec.arch!r}: use one of {list(ARCHS)}")
    return nets[which](spec)


def build_generator(spec: ModelSpec) -> nn.Module:
    return _build(spec, 0)


def build_expert(spec: ModelSpec) -> nn.Module:
    return _build(spec, 1)


def lower_half(frames: torch.Tensor) -> torch.Tensor:
    """(B, T, 3, S, S) -> (B, 3T, S/2, S): the mouth region the expert judges."""
    b, t, c, s, _ = frames.shape
    return frames[:, :, :, s // 2 :].reshape(b, t * c, s // 2, s)
