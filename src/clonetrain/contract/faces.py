"""The faces stage's per-frame flags: what each bit means and which frames nothing may learn from.

Written by stages.faces into faces.npz ("flags"); read by landmarks, audio, report, the verdict and the clip.
"""

from __future__ import annotations

import numpy as np

# Per-frame flags (bit mask); FLAG_NAMES gives the words used in reports.
NO_FACE, TOO_SMALL, BLURRED, PROFILE, INTERPOLATED, SEVERAL_FACES = 1, 2, 4, 8, 16, 32
FLAG_NAMES = {NO_FACE: "no face", TOO_SMALL: "face too small", BLURRED: "blurred", PROFILE: "profile",
              INTERPOLATED: "box interpolated", SEVERAL_FACES: "several faces"}
UNUSABLE = NO_FACE | TOO_SMALL  # frames the trainer must not learn from


def describe_flags(flags: np.ndarray) -> dict[str, int]:
    return {name: int(np.count_nonzero(flags & bit)) for bit, name in FLAG_NAMES.items()}


def usable(flags: np.ndarray) -> np.ndarray:
    """Frames with a face big enough to learn from (before landmarks and speech have their say)."""
    return (flags & UNUSABLE) == 0
