"""The short clip stage=train leaves (and logs): the first seconds of the held-out footage, real | generated,
over their own sound. A glance at it says more about a clone's sync than any loss curve."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import numpy as np
import soundfile as sf
from torch import nn

from clonetrain.contract.sound import frames_sound
from clonetrain.media.compare import write_comparison
from clonetrain.models.inference import generate
from clonetrain.contract.clip import Clip


def heldout_preview(clip: Clip, first: int, reference: int, audio_wav: Path, out: Path,
                    seconds: float) -> Callable[[nn.Module], Path]:
    """A function that renders the preview with a generator and returns the mp4's path."""

    def render(generator: nn.Module) -> Path:
        frames = np.arange(first, min(clip.n, first + int(round(seconds * clip.fps))))
        real = np.asarray(clip.faces[frames])
        mels = np.stack([clip.mel_window(t + 0.5) for t in frames])
        fake = generate(generator, np.asarray(clip.faces[reference]), real, mels)
        unusable = ~clip.usable[frames]
        fake[unusable] = real[unusable]  # no face to learn from there: show the footage as it is
        wav, sr = frames_sound(audio_wav, int(frames[0]), int(frames[-1]) + 1, clip.fps)
        out.parent.mkdir(parents=True, exist_ok=True)
        sound = out.with_suffix(".wav")
        sf.write(sound, wav, sr, subtype="PCM_16")
        try:
            return write_comparison([real, fake], clip.fps, sound, out, ["real (held out)", "clone"],
                                    [False, True], clip.clone)
        finally:
            sound.unlink(missing_ok=True)

    return render
