"""Faces on real footage: the box sits on the face, the main speaker wins, bad frames are flagged."""

import json

import numpy as np
import pytest

from clonetrain.core.errors import FootageError
from clonetrain.contract.faces import BLURRED, NO_FACE, SEVERAL_FACES
from clonetrain.vision.tracking import iou
from conftest import ffmpeg, make_clone, run_until

# Face boxes (brows to chin, cheek to cheek) marked by hand on frames of talk_man_60s.mp4 (256x256).
HAND_BOXES = {0: [65, 65, 215, 215], 400: [56, 70, 204, 225]}


def test_box_overlaps_the_face_in_known_frames(preprocessed):
    faces = np.load(preprocessed.stage_dir("faces") / "faces.npz")
    for frame, box in HAND_BOXES.items():
        assert iou(faces["box"][frame], np.array(box, np.float32)) > 0.6, frame
    assert (faces["flags"] & NO_FACE).sum() == 0


def test_crops_are_written_for_every_frame_at_both_sizes(preprocessed):
    d = preprocessed.stage_dir("faces")
    big = np.load(d / "crops_256.npy", mmap_mode="r")
    small = np.load(d / "crops_96.npy", mmap_mode="r")
    assert big.shape == (500, 256, 256, 3) and small.shape == (500, 96, 96, 3) and big.dtype == np.uint8
    # The crop is of a face, not of black padding: skin-toned centre, varied content.
    centre = np.asarray(big[250, 96:160, 96:160], float)
    assert centre.mean() > 80 and big[250].std() > 20


def test_main_speaker_is_kept_when_a_second_face_appears(footage, clips, tmp_path):
    # talk_man at full size beside a smaller talk_may: two faces in every frame.
    src = tmp_path / "two.mp4"
    ffmpeg("-i", str(clips["man20"]), "-i", str(footage / "talk_may_13s.mp4"), "-filter_complex",
           "[1:v]scale=160:160,pad=160:256:0:48[s];[0:v][s]hstack=inputs=2[v]", "-map", "[v]", "-map", "0:a",
           "-t", "12", "-c:v", "libx264", "-preset", "veryfast", "-crf", "18", str(src))
    ws = make_clone(tmp_path, "two", {"two.mp4": src})
    run_until(tmp_path, "two", "faces")
    faces = np.load(ws.stage_dir("faces") / "faces.npz")
    assert np.mean((faces["flags"] & SEVERAL_FACES) != 0) > 0.8  # the second face is seen...
    centres = (faces["box"][:, 0] + faces["box"][:, 2]) / 2
    assert np.all(centres < 256)  # ...but the box never leaves the main speaker (left half)


def test_blurred_frames_are_flagged(clips, tmp_path):
    src = tmp_path / "blur.mp4"
    ffmpeg("-i", str(clips["man20"]), "-t", "12", "-vf", "boxblur=6:2", "-c:a", "copy", str(src))
    ws = make_clone(tmp_path, "blur", {"blur.mp4": src})
    run_until(tmp_path, "blur", "faces")
    flags = np.load(ws.stage_dir("faces") / "faces.npz")["flags"]
    assert np.mean((flags & BLURRED) != 0) > 0.9
    assert any("blurred in" in w for w in ws.read_manifest("faces")["warnings"])


def test_take_without_a_face_is_left_out_and_named(clips, tmp_path):
    noface = tmp_path / "noface.mp4"
    ffmpeg("-f", "lavfi", "-i", "testsrc2=size=320x240:rate=25", "-i", str(clips["man20"]), "-map", "0:v",
           "-map", "1:a", "-t", "12", "-c:v", "libx264", "-preset", "veryfast", str(noface))
    ws = make_clone(tmp_path, "nf", {"a.mp4": clips["man20"], "b.mp4": noface})
    run_until(tmp_path, "nf", "faces")
    rows = {r["file"]: r for r in json.loads((ws.stage_dir("faces") / "takes.json").read_text())}
    assert rows["a.mp4"]["status"] == "ok"
    assert rows["b.mp4"]["status"] == "rejected" and rows["b.mp4"]["reason"] == "no face in 100% of frames"
    # Only the take without a face: the stage fails with the reason.
    make_clone(tmp_path, "nf2", {"b.mp4": noface})
    with pytest.raises(FootageError, match="no face in 100% of frames"):
        run_until(tmp_path, "nf2", "faces")
