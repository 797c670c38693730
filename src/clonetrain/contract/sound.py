"""The clone's sound by frame numbers: the samples that play under frames [first, stop) of the footage.

The sample rate is the file's own (ingest.sample_rate when it was written), never assumed, so a clone
preprocessed at 22.05 kHz cuts the same seconds as one at 16 kHz.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import soundfile as sf


def frames_sound(path: Path, first: int, stop: int, fps: float) -> tuple[np.ndarray, int]:
    """(samples, sample rate) under frames [first, stop) at `fps`. Only those samples are read: a long take's
    whole sound track need not be in memory."""
    sr = sf.info(str(path)).samplerate
    start, end = int(round(first * sr / fps)), int(round(stop * sr / fps))
    wav, _ = sf.read(path, start=start, stop=end, dtype="float32")
    return wav, sr
