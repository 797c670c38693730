"""68-point iBUG landmarks behind one protocol, with two backends.

- MeshLandmarker: MediaPipe's face mesh (model inside the mediapipe wheel; works offline), its 468 points
  mapped to the 68 iBUG points with a fixed table (two mesh points averaged where iBUG sits between them).
- FanLandmarker: face-alignment's 2DFAN-4, loaded from a local file (never downloaded).

Both take square face crops (n, S, S, 3) uint8 RGB in time order and return (n, 68, 2) in crop pixels,
NaN where no face was found.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Protocol

import numpy as np

from clonetrain.core.errors import WeightsMissingError
from clonetrain.core.quiet import native_stderr


class Landmarker(Protocol):
    def __call__(self, crops: np.ndarray) -> np.ndarray: ...

    def reset(self) -> None:
        """Forget temporal state (call at a cut between takes)."""

    def close(self) -> None: ...


# iBUG 68 -> MediaPipe face mesh indices. Subject's right side is image-left, as in iBUG.
MESH_TO_IBUG: tuple[tuple[int, ...], ...] = (
    # jaw 0-16, from the right ear down to the chin (8) and up to the left ear
    (127,), (234,), (93,), (132, 58), (58, 172), (136,), (150,), (176,), (152,),
    (400,), (379,), (365,), (397, 288), (361,), (323,), (454,), (356,),
    # brows 17-21 (right, outer->inner), 22-26 (left, inner->outer)
    (70,), (63,), (105,), (66,), (107,), (336,), (296,), (334,), (293,), (300,),
    # nose bridge 27-30 and base 31-35
    (168,), (197,), (5,), (4,), (75,), (97,), (2,), (326,), (305,),
    # right eye 36-41: outer corner, upper lid x2, inner corner, lower lid x2
    (33,), (160,), (158,), (133,), (153,), (144,),
    # left eye 42-47: inner corner, upper lid x2, outer corner, lower lid x2
    (362,), (385,), (387,), (263,), (373,), (380,),
    # outer lips 48-59: right corner, upper lip to the left corner (54), lower lip back
    (61,), (40,), (37,), (0,), (267,), (270,), (291,), (321,), (314,), (17,), (84,), (91,),
    # inner lips 60-67: right corner, upper (61-63), left corner (64), lower (65-67)
    (78,), (81,), (13,), (311,), (308,), (402,), (14,), (178,),
)
assert len(MESH_TO_IBUG) == 68


def mesh_to_ibug(mesh: np.ndarray) -> np.ndarray:
    """(..., 468+, 2) mesh points -> (..., 68, 2)."""
    return np.stack([mesh[..., list(ix), :].mean(axis=-2) for ix in MESH_TO_IBUG], axis=-2)


class MeshLandmarker:
    """Face mesh in tracking mode: consecutive frames reuse the last face region, which is both faster and
    steadier than detecting in every frame."""

    name = "mediapipe"

    def __init__(self, still: bool = False):
        self.still = still  # every frame on its own (no tracking), as for unrelated images
        self._mesh = None
        self.reset()

    def reset(self) -> None:
        import mediapipe as mp

        with native_stderr("mediapipe"):
            if self._mesh is not None:
                self._mesh.close()
            self._mesh = mp.solutions.face_mesh.FaceMesh(static_image_mode=self.still, max_num_faces=1,
                                                         refine_landmarks=False, min_detection_confidence=0.3,
                                                         min_tracking_confidence=0.3)
            # The graph opens its models in the background and logs as it does: a blank frame (no face, so no
            # tracking state) waits for that inside the catch.
            self._mesh.process(np.zeros((64, 64, 3), np.uint8))

    def __call__(self, crops: np.ndarray) -> np.ndarray:
        with native_stderr("mediapipe"):
            return self._process(crops)

    def _process(self, crops: np.ndarray) -> np.ndarray:
        out = np.full((len(crops), 68, 2), np.nan, np.float32)
        for i, crop in enumerate(crops):
            h, w = crop.shape[:2]
            res = self._mesh.process(np.ascontiguousarray(crop))
            if res.multi_face_landmarks:
                pts = np.array([[p.x * w, p.y * h] for p in res.multi_face_landmarks[0].landmark], np.float32)
                out[i] = mesh_to_ibug(pts)
        return out

    def close(self) -> None:
        if self._mesh is not None:
            with native_stderr("mediapipe"):
                self._mesh.close()
            self._mesh = None


FAN_FILE = "2DFAN4-11f355bf06.pth.tar"


def find_fan_weights(configured: str = "") -> Path:
    """The 2DFAN-4 file: `configured` (a file or a folder holding it), else the torch hub cache."""
    hub = Path(os.environ.get("TORCH_HOME", Path.home() / ".cache" / "torch")) / "hub" / "checkpoints"
    candidates = []
    if configured:
        p = Path(configured).expanduser()
        candidates.append(p / FAN_FILE if p.is_dir() else p)
    candidates.append(hub / FAN_FILE)
    for c in candidates:
        if c.is_file():
            return c
    raise WeightsMissingError(
        f"the FAN landmark weights are not on this machine (looked for {', '.join(str(c) for c in candidates)}); "
        "they cannot be downloaded here",
        f"copy {FAN_FILE} (face-alignment 1.4+ 2DFAN-4) into {hub}/ or set landmarks.fan_weights=/path/to/it, "
        "or use the offline default landmarks=mediapipe",
    )


def load_fan(path: Path, device: str):
    """A 2DFAN-4 network from a TorchScript archive (what face-alignment publishes) or a plain state dict."""
    import torch

    try:
        net = torch.jit.load(str(path), map_location=device)
    except RuntimeError:
        from face_alignment.models import FAN

        net = FAN(4)
        try:
            state = torch.load(str(path), map_location=device, weights_only=True)
        except Exception as err:  # noqa: BLE001 - any unreadable file gets the same clear message
            raise WeightsMissingError(f"{path} is neither a TorchScript FAN nor a FAN state dict ({err})",
                                      f"replace it with an intact copy of {FAN_FILE}") from None
        net.load_state_dict(state.get("state_dict", state))
    return net.to(device).eval()


class FanLandmarker:
    """2DFAN-4 on 256 px crops: 64x64 heatmaps, decoded with sub-pixel refinement."""

    name = "fan"

    def __init__(self, weights: str = "", device: str = "auto", batch_size: int = 32):
        import torch

        self.device = ("cuda" if torch.cuda.is_available() else "cpu") if device == "auto" else device
        self.net = load_fan(find_fan_weights(weights), self.device)
        self.batch_size = batch_size

    def reset(self) -> None:  # stateless
        pass

    def __call__(self, crops: np.ndarray) -> np.ndarray:
        import torch
        import torch.nn.functional as F

        out = []
        for i in range(0, len(crops), self.batch_size):
            x = torch.from_numpy(np.ascontiguousarray(crops[i : i + self.batch_size])).to(self.device)
            x = x.permute(0, 3, 1, 2).float().div(255.0)
            size = x.shape[-1]
            if size != 256:
                x = F.interpolate(x, size=(256, 256), mode="bilinear", align_corners=False)
            with torch.inference_mode():
                heat = self.net(x)
                heat = heat[-1] if isinstance(heat, (list, tuple)) else heat
            out.append(decode_heatmaps(heat.float().cpu().numpy()) * (size / heat.shape[-1]))
        return np.concatenate(out).astype(np.float32) if out else np.zeros((0, 68, 2), np.float32)

    def close(self) -> None:
        self.net = None


def decode_heatmaps(heat: np.ndarray) -> np.ndarray:
    """(n, 68, H, W) heatmaps -> (n, 68, 2) points in heatmap pixels: the arg-max, moved a quarter pixel
    towards the higher neighbour (the usual FAN refinement), at pixel centres."""
    n, k, h, w = heat.shape
    flat = heat.reshape(n, k, -1).argmax(-1)
    ys, xs = np.divmod(flat, w)
    pts = np.stack([xs, ys], -1).astype(np.float32)
    ni, ki = np.meshgrid(np.arange(n), np.arange(k), indexing="ij")
    inner_x = (xs > 0) & (xs < w - 1)
    inner_y = (ys > 0) & (ys < h - 1)
    dx = np.where(inner_x, heat[ni, ki, ys, np.clip(xs + 1, 0, w - 1)] - heat[ni, ki, ys, np.clip(xs - 1, 0, w - 1)], 0)
    dy = np.where(inner_y, heat[ni, ki, np.clip(ys + 1, 0, h - 1), xs] - heat[ni, ki, np.clip(ys - 1, 0, h - 1), xs], 0)
    pts += 0.25 * np.stack([np.sign(dx), np.sign(dy)], -1)
    return pts + 0.5
