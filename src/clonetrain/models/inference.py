"""Batched inference: faces with a mouth for given mel windows. Shared by evaluate and render."""

from __future__ import annotations

import numpy as np
import torch
from torch import nn


def masked_input(frames: torch.Tensor, refs: torch.Tensor) -> torch.Tensor:
    """(N, 3, S, S) targets and references -> (N, 6, S, S): reference | target with its lower half blanked. The
    one way the generator's input is made, in training (training.module) and at inference, so they cannot drift."""
    masked = frames.clone()
    masked[:, :, frames.shape[-2] // 2 :] = 0
    return torch.cat([refs, masked], 1)


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
    for i in range(0, len(targets), batch_size):
        x = torch.from_numpy(np.array(targets[i : i + batch_size])).float().div(255).permute(0, 3, 1, 2).to(device)
        inp = masked_input(x, ref.expand(len(x), -1, -1, -1))
        m = torch.from_numpy(np.array(mels[i : i + batch_size])).float().unsqueeze(1).to(device)
        y = generator(inp, m)
        out[i : i + batch_size] = (y.clamp(0, 1) * 255).round().byte().permute(0, 2, 3, 1).cpu().numpy()
    return out


def speech_windows(settings: dict, wav: np.ndarray, sr: int, fps: float, n_frames: int) -> np.ndarray:
    """What the generator hears for each of `n_frames` video frames of new speech: (n_frames, channels, window),
    normalised as in training. `settings`: the audio_analysis.model_input.FeatureSpec (as a dict) of the features the
    model was trained with (a package's "audio", a clone's audio/features.json "spec"). Render and evaluate's
    cross-speaker drive both use this, and training windows the cached features with the same FeatureSpec, so a
    model is always fed what it was trained on. Frame k is centred on the sound at (k + 0.5) / fps seconds; past
    the end of the sound the edge is repeated."""
    from clonetrain.audio_analysis.model_input import FeatureSpec

    spec = FeatureSpec.from_dict(settings)
    return spec.windows(spec.model_input(wav, sr), np.arange(n_frames) + 0.5, fps).astype(np.float32)
