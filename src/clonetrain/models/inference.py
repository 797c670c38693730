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


# A live session (runtime.Session): a frame goes out once this much sound after it has arrived, in batches of up
# to LIVE_BATCH frames; its Whisper window reaches up to LIVE_AHEAD_S past its frames, as far as sound has arrived.
LIVE_LOOKAHEAD_S = 0.1
LIVE_BATCH = 8
LIVE_AHEAD_S = 0.5


def cut_padded(audio: np.ndarray, start: int, s0: int, s1: int) -> np.ndarray:
    """Samples s0..s1 of a timeline of which `audio` holds the samples from `start` on: silence elsewhere (before
    the start, or past what has arrived)."""
    seg = np.zeros(s1 - s0, np.float32)
    lo, hi = max(s0, start), min(s1, start + len(audio))
    if hi > lo:
        seg[lo - s0 : hi - s0] = audio[lo - start : hi - start]
    return seg


def recent_windows(spec, sound, k0: int, n: int, fps: int, sr: int, received: int, lookahead: int) -> np.ndarray:
    """What the generator hears live for frames k0..k0+n of a clone hearing Whisper: one short window from
    whisper.LIVE_CONTEXT_S before the frames (on the frame grid) to the sound received after them, up to
    LIVE_AHEAD_S and at least `lookahead` samples (silence past what has arrived), encoded alone
    (FeatureSpec.recent_input). Near what render hears from the training grid, not the same: the grid's windows
    hear up to 30 s ahead. `sound(s0, s1)`: samples s0..s1 of the speech as known (zeros where there are none);
    `received`: how many samples have arrived."""
    from clonetrain.audio_analysis import whisper

    spf = sr // fps
    first = k0 - int(np.ceil(whisper.LIVE_CONTEXT_S * fps))
    s0, end = first * spf, (k0 + n) * spf
    s1 = max(end + lookahead, min(received, end + int(LIVE_AHEAD_S * sr)))
    feats = spec.recent_input(sound(s0, s1), sr)
    return spec.windows(feats, np.arange(k0, k0 + n) + 0.5 - first, fps).astype(np.float32)


def live_speech_windows(settings: dict, wav: np.ndarray, sr: int, fps: int, n_frames: int,
                        chunk_s: float = 0.2, batch_size: int = LIVE_BATCH) -> np.ndarray:
    """speech_windows as a live stream hears a recording: the speech arrives in `chunk_s` chunks (stream.chunk_s)
    and after each the session writes the frames that are ready, in batches, each Whisper window cut from the sound
    received so far (recent_windows); at the end the rest goes out (Session.close). A log-mel clone hears render's
    windows live too (the session cuts them from the same grid, with margins past the STFT's edges), so they are
    returned as they are."""
    from clonetrain.audio_analysis.model_input import FeatureSpec

    spec = FeatureSpec.from_dict(settings)
    if spec.encoder != "whisper" or n_frames == 0:
        return speech_windows(settings, wav, sr, fps, n_frames)
    wav = np.asarray(wav, np.float32)
    spf, lookahead, chunk = sr // fps, int(round(LIVE_LOOKAHEAD_S * sr)), max(1, int(round(chunk_s * sr)))
    received, frame, out = 0, 0, []

    def sound(s0: int, s1: int) -> np.ndarray:  # as much of the speech as has arrived
        return cut_padded(wav[:received], 0, s0, s1)

    def write(upto: int) -> None:  # Session.pump: every ready frame, in batches
        nonlocal frame
        while frame < upto:
            n = min(batch_size, upto - frame)
            out.append(recent_windows(spec, sound, frame, n, fps, sr, received, lookahead))
            frame += n

    while frame < n_frames:
        received = min(received + chunk, len(wav))
        write(min((received - lookahead) // spf, n_frames))  # after each chunk (Session.ready)
        if received >= len(wav):
            write(n_frames)  # the end: Session.close flushes the rest
    return np.concatenate(out)
