"""Landmarks on real footage (MediaPipe mesh, the offline default) and the FAN backend's integration."""

import numpy as np
import pytest

from clonetrain.core.errors import WeightsMissingError
from clonetrain.vision import landmarks as lmk


def test_68_points_lie_inside_the_face_box(preprocessed):
    lm = np.load(preprocessed.stage_dir("landmarks") / "landmarks.npz")
    box = np.load(preprocessed.stage_dir("faces") / "faces.npz")["box"]
    assert lm["valid"].mean() > 0.98
    pts = lm["points_frame"][lm["valid"]]
    b = box[lm["valid"]]
    w = (b[:, 2] - b[:, 0])[:, None]
    # Jaw points may sit a little outside a detector's box; allow a quarter of its size.
    inside = ((pts[..., 0] > b[:, None, 0] - w / 4) & (pts[..., 0] < b[:, None, 2] + w / 4)
              & (pts[..., 1] > b[:, None, 1] - w / 4) & (pts[..., 1] < b[:, None, 3] + w / 4))
    assert inside.mean() > 0.99


def test_68_point_layout_is_ibug(preprocessed):
    p = np.load(preprocessed.stage_dir("landmarks") / "landmarks.npz")["points"][100]
    assert p[36, 0] < p[39, 0] < p[42, 0] < p[45, 0]       # eye corners left to right in the image
    assert p[48, 0] < p[51, 0] < p[54, 0]                   # mouth corners around the upper lip centre
    assert p[27, 1] < p[30, 1] < p[51, 1] < p[57, 1] < p[8, 1]  # nose bridge, tip, lips, chin top to bottom
    assert p[0, 0] < p[8, 0] < p[16, 0]


def test_mouth_opening_rises_with_speech_energy(preprocessed):
    # The mouth opens as the voice gets louder, about 100 ms ahead of the sound: the frame-to-frame changes
    # of mouth opening and voice energy correlate at that lag, and far less at unrelated lags.
    lm = np.load(preprocessed.stage_dir("landmarks") / "landmarks.npz")
    energy = np.load(preprocessed.stage_dir("audio") / "energy.npy")
    dm, de = np.diff(lm["mouth_open"]), np.diff(energy)

    def r(lag):
        return np.corrcoef(dm[: len(dm) - lag], de[lag:])[0, 1]

    near = max(r(lag) for lag in (1, 2, 3))
    far = np.abs([r(lag) for lag in range(10, 20)]).max()
    assert near > 0.2 and near > 2 * far, (near, far)


def test_head_pose_is_near_frontal(preprocessed):
    pose = np.load(preprocessed.stage_dir("landmarks") / "landmarks.npz")["pose"]
    med = np.nanmedian(np.abs(pose), axis=0)
    assert np.all(med < 20), med  # a speaker facing the camera


def test_fan_missing_weights_is_a_clear_error(tmp_path, monkeypatch):
    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "torch"))
    with pytest.raises(WeightsMissingError) as err:
        lmk.FanLandmarker(weights=str(tmp_path / "models"))
    msg = str(err.value)
    assert lmk.FAN_FILE in msg and str(tmp_path / "torch" / "hub" / "checkpoints") in msg


def test_fan_backend_runs_a_local_network(tmp_path, preprocessed):
    torch = pytest.importorskip("torch")
    from face_alignment.models import FAN

    torch.manual_seed(0)
    path = tmp_path / lmk.FAN_FILE
    torch.save(FAN(4).state_dict(), path)  # random weights: tests the integration, not accuracy
    crops = np.load(preprocessed.stage_dir("faces") / "crops_256.npy", mmap_mode="r")[:3]
    out = lmk.FanLandmarker(weights=str(tmp_path), device="cpu", batch_size=2)(np.asarray(crops))
    assert out.shape == (3, 68, 2) and np.isfinite(out).all()
    assert out.min() >= 0 and out.max() <= 256


def test_heatmap_decoding_finds_the_peaks():
    heat = np.zeros((1, 68, 64, 64), np.float32)
    for k in range(68):
        heat[0, k, k % 60 + 2, (3 * k) % 60 + 2] = 1.0
    pts = lmk.decode_heatmaps(heat)
    expect = np.array([[(3 * k) % 60 + 2.5, k % 60 + 2.5] for k in range(68)])
    np.testing.assert_allclose(pts[0], expect)
