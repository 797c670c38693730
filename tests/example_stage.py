"""The worked examples of docs/architecture.md, run by tests/test_extending.py.

- "Add a stage": `lipsdb` reads the landmarks and writes, per frame, whether the lips are apart.
- "Add a backend": `StillMeshLandmarker`, MediaPipe's face mesh on every frame on its own (no tracking from the
  frame before), built from `landmarks.model._target_`.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from clonetrain.contract import files
from clonetrain.contract.contents import Arrays
from clonetrain.core.manifest import StageResult
from clonetrain.vision.landmarks import MeshLandmarker


@dataclass
class LipsdbCfg:
    """Its settings, with their defaults (as core/config.py's dataclasses hold every stage's)."""
    min_open: float = 0.05  # the inner-lip gap (eye distances) above which the lips count as apart


@dataclass
class Lips(Arrays):
    """lipsdb/lips.npz, declared for the stages that will read it (contract.contents.ARRAYS)."""
    apart: np.ndarray  # (N,) bool: the lips are apart in the frame


def run(cfg, ws, out_dir) -> StageResult:
    opening = files.read(ws, "landmarks", "landmarks").mouth_open
    apart = np.nan_to_num(opening) > cfg.lipsdb.min_open
    files.write(out_dir, "lipsdb", "lips", Lips(apart=apart))
    return StageResult(counts={"frames": int(apart.size), "apart": int(apart.sum())},
                       summary=[f"lips apart in {int(apart.sum())}/{apart.size} frames"])


class StillMeshLandmarker(MeshLandmarker):
    """Each frame on its own: slower than tracking, but no frame's fit leans on the one before."""

    name = "mesh-still"

    def __init__(self):
        super().__init__(still=True)
