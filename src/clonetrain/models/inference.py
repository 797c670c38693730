"""Batched inference: faces with a mouth for given mel windows. Shared by evaluate and render."""

from __future__ import annotations

import numpy as np
import torch
from torch import nn


def best_device() -> str:
    return "cuda" if torch.cuda.is_available() else "cpu"


@torch.inference_mode()
def generate(generator: nn.Module, reference: np.ndarray, targets: np.ndarray, mels: np.ndarray,
             batch_size: int = 32, device: str | None = None) -> np.ndarray:
    """reference (S, S, 3) uint8; targets (n, S, S, 3) uint8 (their lower half is masked here); mels
    (n, n_mels, 16) normalised -> (n, S, S, 3) uint8."""
    device = device or best_device()
    generator = generator.to(device).eval()
    ref = torch.from_numpy(np.array(reference)).float().div(255).permute(2, 0, 1).to(device)
    out = np.empty_like(targets)
    s = targets.shape[1]
    for i in range(0, len(targets), batch_size):
        x = torch.from_numpy(np.array(targets[i : i + batch_size])).float().div(255).permute(0, 3, 1, 2).to(device)
        x[:, :, s // 2 :] = 0
        inp = torch.cat([ref.expand(len(x), -1, -1, -1), x], 1)
        m = torch.from_numpy(np.array(mels[i : i + batch_size])).float().unsqueeze(1).to(device)
        y = generator(inp, m)
        out[i : i + batch_size] = (y.clamp(0, 1) * 255).round().byte().permute(0, 2, 3, 1).cpu().numpy()
    return out


def speech_windows(settings: dict, wav: np.ndarray, sr: int, fps: float, n_frames: int) -> np.ndarray:
    """What the generator hears for each of `n_frames` video frames of new speech: (n_frames, n_mels, 16),
    normalised as in training. `settings`: the audio_features the model was trained with (a package's "audio").
    Render and evaluate's cross-speaker drive both use this, so they always feed a model what it was trained on.
    Frame k is centred on the sound at (k + 0.5) / fps seconds; past the end of the sound the edge is repeated."""
    from clonetrain.audio import features
    from clonetrain.models.lipsync import MEL_WINDOW
    from clonetrain.training.data import MEL_CENTER, MEL_SCALE

    a = settings
    mel = (features.log_mel(wav, sr, a["n_fft"], a["hop_length"], a["win_length"], a["n_mels"], a["fmin"], a["fmax"])
           - MEL_CENTER) / MEL_SCALE
    per_frame = sr / a["hop_length"] / fps
    starts = np.round((np.arange(n_frames) + 0.5) * per_frame - MEL_WINDOW / 2).astype(int)
    starts = np.clip(starts, 0, max(len(mel) - MEL_WINDOW, 0))
    if len(mel) < MEL_WINDOW:
        mel = np.pad(mel, ((0, MEL_WINDOW - len(mel)), (0, 0)), mode="edge")
    return np.stack([mel[s : s + MEL_WINDOW].T for s in starts]).astype(np.float32)
