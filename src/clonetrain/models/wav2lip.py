"""model=wav2lip: the public Wav2Lip generator and its lip-sync expert, layer for layer.

Parameter names and shapes are those of the published checkpoints (wav2lip.pth / wav2lip_gan.pth and
lipsync_expert.pth, Prajwal et al. 2020), so an engineer who has them can fine-tune a clone from them
(models.checkpoint.load_wav2lip loads them). Outside, both nets speak our conventions, so training, evaluation and render
need not know which architecture they drive:

- faces come in as reference | masked target, RGB; Wav2Lip wants masked target | reference, BGR;
- mels come in normalised as training.data does it ((dB + 40) / 40); Wav2Lip's nets were trained on
  pre-emphasised log-mels scaled to [-4, 4]. `WAV2LIP_AUDIO` are the audio settings both share; the rest
  (the affine scale and the pre-emphasis filter) is a fixed per-band correction applied here.
- like our own generator, the known upper half of the face is passed through unchanged.
"""

from __future__ import annotations

import librosa
import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from clonetrain.audio_analysis.model_input import FeatureSpec

_MEL = FeatureSpec()  # how our log-mel features are normalised (what the mel audio stage writes and render computes)
# The audio settings of Wav2Lip's hparams.py that our audio stage must match for its nets to hear right.
WAV2LIP_AUDIO = {"sample_rate": 16000, "n_mels": 80, "n_fft": 800, "hop_length": 200, "win_length": 800,
                 "fmin": 55.0, "fmax": 7600.0}
_PREEMPHASIS = 0.97


class ConvBN(nn.Module):
    """Wav2Lip's conv.Conv2d / Conv2dTranspose: conv_block = (conv, batch norm), then ReLU (residual optional)."""

    def __init__(self, cin: int, cout: int, kernel: int | tuple, stride: int | tuple, padding: int,
                 residual: bool = False, transpose: bool = False, output_padding: int = 0):
        super().__init__()
        conv = (nn.ConvTranspose2d(cin, cout, kernel, stride, padding, output_padding) if transpose
                else nn.Conv2d(cin, cout, kernel, stride, padding))
        self.conv_block = nn.Sequential(conv, nn.BatchNorm2d(cout))
        self.residual = residual

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = self.conv_block(x)
        return F.relu(y + x if self.residual else y)


def _res(c: int, n: int) -> list[ConvBN]:
    return [ConvBN(c, c, 3, 1, 1, residual=True) for _ in range(n)]


def _up(cin: int, cout: int, n_res: int, stride: int = 2) -> nn.Sequential:
    if stride == 1:
        first = ConvBN(cin, cout, 3, 1, 0, transpose=True)
    else:
        first = ConvBN(cin, cout, 3, 2, 1, transpose=True, output_padding=1)
    return nn.Sequential(first, *_res(cout, n_res))


def _audio_encoder(last_res: int) -> nn.Sequential:
    """(B, 1, 80, 16) -> (B, 512, 1, 1). The generator's has one residual block fewer at 256 channels."""
    return nn.Sequential(
        ConvBN(1, 32, 3, 1, 1), *_res(32, 2),
        ConvBN(32, 64, 3, (3, 1), 1), *_res(64, 2),
        ConvBN(64, 128, 3, 3, 1), *_res(128, 2),
        ConvBN(128, 256, 3, (3, 2), 1), *_res(256, last_res),
        ConvBN(256, 512, 3, 1, 0), ConvBN(512, 512, 1, 1, 0),
    )


def _preemphasis_db(n_mels: int) -> np.ndarray:
    """Per mel band, the gain in dB of Wav2Lip's pre-emphasis filter (1 - 0.97 z^-1), weighted by the band's
    filter: log-mel of the filtered signal ~ log-mel of the signal + this."""
    a = WAV2LIP_AUDIO
    basis = librosa.filters.mel(sr=a["sample_rate"], n_fft=a["n_fft"], n_mels=n_mels, fmin=a["fmin"], fmax=a["fmax"])
    w = 2 * np.pi * librosa.fft_frequencies(sr=a["sample_rate"], n_fft=a["n_fft"]) / a["sample_rate"]
    gain = np.sqrt(1 + _PREEMPHASIS**2 - 2 * _PREEMPHASIS * np.cos(w))
    return (20 * np.log10((basis @ gain) / basis.sum(1))).astype(np.float32)


class MelAdapter(nn.Module):
    """Our normalised log-mel ((dB + 40) / 40) -> Wav2Lip's (pre-emphasised, ref 20 dB, floor -100 dB, [-4, 4])."""

    def __init__(self, n_mels: int = 80):
        super().__init__()
        # Not part of the state dict: a published checkpoint has no such entry.
        self.register_buffer("offset_db", torch.from_numpy(_preemphasis_db(n_mels))[:, None], persistent=False)

    def forward(self, mel: torch.Tensor) -> torch.Tensor:  # (B, 1, n_mels, 16)
        db = mel * _MEL.scale + _MEL.center + self.offset_db  # back to dB: our normalisation undone
        # Wav2Lip: symmetric mels, max_abs_value 4, min_level_db -100, ref_level_db 20.
        return (8.0 * (db - 20.0 + 100.0) / 100.0 - 4.0).clamp(-4.0, 4.0)


def _bgr(x: torch.Tensor) -> torch.Tensor:
    """Swap R and B of every 3-channel group (works both ways)."""
    b, c = x.shape[:2]
    return x.view(b, c // 3, 3, *x.shape[2:]).flip(2).view_as(x)


class Wav2LipGenerator(nn.Module):
    def __init__(self, spec):
        super().__init__()
        if spec.image_size != 96:
            raise ValueError("model=wav2lip works on 96 px faces (faces.train_size=96)")
        self.spec = spec
        self.face_encoder_blocks = nn.ModuleList([
            nn.Sequential(ConvBN(6, 16, 7, 1, 3)),                            # 96
            nn.Sequential(ConvBN(16, 32, 3, 2, 1), *_res(32, 2)),             # 48
            nn.Sequential(ConvBN(32, 64, 3, 2, 1), *_res(64, 3)),             # 24
            nn.Sequential(ConvBN(64, 128, 3, 2, 1), *_res(128, 2)),           # 12
            nn.Sequential(ConvBN(128, 256, 3, 2, 1), *_res(256, 2)),          # 6
            nn.Sequential(ConvBN(256, 512, 3, 2, 1), *_res(512, 1)),          # 3
            nn.Sequential(ConvBN(512, 512, 3, 1, 0), ConvBN(512, 512, 1, 1, 0)),  # 1
        ])
        self.audio_encoder = _audio_encoder(last_res=1)
        self.face_decoder_blocks = nn.ModuleList([
            nn.Sequential(ConvBN(512, 512, 1, 1, 0)),
            _up(1024, 512, 1, stride=1),   # 3
            _up(1024, 512, 2),             # 6
            _up(768, 384, 2),              # 12
            _up(512, 256, 2),              # 24
            _up(320, 128, 2),              # 48
            _up(160, 64, 2),               # 96
        ])
        self.output_block = nn.Sequential(ConvBN(80, 32, 3, 1, 1), nn.Conv2d(32, 3, 1), nn.Sigmoid())
        self.mel_adapter = MelAdapter(spec.n_mels)

    def forward(self, faces: torch.Tensor, mels: torch.Tensor, control: torch.Tensor | None = None) -> torch.Tensor:
        """faces (B, 6, 96, 96) in [0, 1] (reference | masked target, RGB); mels (B, 1, 80, 16) -> (B, 3, 96, 96).
        control: ignored (the published nets take no mouth control)."""
        x = _bgr(torch.cat([faces[:, 3:6], faces[:, :3]], 1))
        feats = []
        for block in self.face_encoder_blocks:
            x = block(x)
            feats.append(x)
        x = self.audio_encoder(self.mel_adapter(mels))
        for block in self.face_decoder_blocks:
            x = torch.cat([block(x), feats.pop()], 1)
        out = _bgr(self.output_block(x))
        half = out.shape[-2] // 2
        return torch.cat([faces[:, 3:6, :half], out[:, :, half:]], dim=2)


class Wav2LipExpert(nn.Module):
    """SyncNet_color: lower halves of 5 frames (B, 15, 48, 96) and their mel window; cosine of 512-d embeddings."""

    def __init__(self, spec):
        super().__init__()
        if spec.sync_frames != 5 or spec.image_size != 96:
            raise ValueError("model=wav2lip's expert judges 5 frames of 96 px faces")
        self.spec = spec
        self.face_encoder = nn.Sequential(
            ConvBN(15, 32, 7, 1, 3),
            ConvBN(32, 64, 5, (1, 2), 1), *_res(64, 2),
            ConvBN(64, 128, 3, 2, 1), *_res(128, 3),
            ConvBN(128, 256, 3, 2, 1), *_res(256, 2),
            ConvBN(256, 512, 3, 2, 1), *_res(512, 2),
            ConvBN(512, 512, 3, 2, 1), ConvBN(512, 512, 3, 1, 0), ConvBN(512, 512, 1, 1, 0),
        )
        self.audio_encoder = _audio_encoder(last_res=2)
        self.mel_adapter = MelAdapter(spec.n_mels)

    def embed(self, mouths: torch.Tensor, mels: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        f = F.normalize(self.face_encoder(_bgr(mouths)).flatten(1), dim=1)
        a = F.normalize(self.audio_encoder(self.mel_adapter(mels)).flatten(1), dim=1)
        return f, a

    def forward(self, mouths: torch.Tensor, mels: torch.Tensor) -> torch.Tensor:
        f, a = self.embed(mouths, mels)
        return (f * a).sum(1).clamp(1e-6, 1 - 1e-6)
