"""Face detection behind a small protocol. The default backend is MediaPipe's BlazeFace, whose models ship
inside the mediapipe wheel, so it works on an offline machine."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Protocol

import numpy as np

from clonetrain.core.quiet import native_stderr


@dataclass(frozen=True)
class Detection:
    box: np.ndarray        # x0, y0, x1, y1 in pixels
    score: float
    keypoints: np.ndarray  # (6, 2) pixels: right eye, left eye, nose tip, mouth, right ear, left ear


class FaceDetector(Protocol):
    """What the faces stage and the drivers build from `faces.detector` (its `_target_`, called with
    min_confidence and the node's other keys)."""

    def detect(self, rgb: np.ndarray) -> list[Detection]: ...

    def close(self) -> None: ...


class MediaPipeFaceDetector:
    """BlazeFace short-range model (faces filling much of the frame), with the full-range model as a
    fallback on frames where the first finds nothing (small faces in wide shots)."""

    def __init__(self, min_confidence: float = 0.5):
        import mediapipe as mp

        fd = mp.solutions.face_detection
        with native_stderr("mediapipe"):
            self._models = [fd.FaceDetection(model_selection=m, min_detection_confidence=min_confidence)
                            for m in (0, 1)]
            # A graph opens its models in the background after it is built and logs as it does; one blank frame
            # waits for that inside the catch (the fallback model may otherwise never see a frame).
            for model in self._models:
                model.process(np.zeros((64, 64, 3), np.uint8))

    def detect(self, rgb: np.ndarray) -> list[Detection]:
        h, w = rgb.shape[:2]
        for model in self._models:
            with native_stderr("mediapipe"):
                result = model.process(rgb)
            if result.detections:
                return [_to_detection(d, w, h) for d in result.detections]
        return []

    def close(self) -> None:
        with native_stderr("mediapipe"):
            for m in self._models:
                m.close()


def _to_detection(d, w: int, h: int) -> Detection:
    loc = d.location_data
    b = loc.relative_bounding_box
    box = np.array([b.xmin * w, b.ymin * h, (b.xmin + b.width) * w, (b.ymin + b.height) * h], np.float32)
    kps = np.array([[k.x * w, k.y * h] for k in loc.relative_keypoints], np.float32)
    return Detection(box=box, score=float(d.score[0]), keypoints=kps)
