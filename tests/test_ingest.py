"""Ingest on real footage: good takes normalised, each kind of bad upload reported with its own reason."""

import json
import subprocess
import sys

import numpy as np
import pytest
import soundfile as sf

from clonetrain.core.errors import ConsentError, NotEnoughFootageError
from conftest import ffmpeg, make_clone, run


def _takes(ws):
    return {t["file"]: t for t in json.loads((ws.stage_dir("ingest") / "takes.json").read_text())}


def test_good_take_is_normalised(preprocessed):
    d = preprocessed.stage_dir("ingest")
    take = _takes(preprocessed)["take1.mp4"]
    assert take["status"] == "ok" and take["frames"] == 500 and take["lipsync"]
    wav, sr = sf.read(d / "audio.wav")
    assert sr == 16000 and wav.ndim == 1 and len(wav) == 500 * 640
    frames = np.load(d / "frames.npz")
    assert frames["take"].tolist() == [0] * 500 and frames["frame"][-1] == 499
    assert 14 < take["speech_s"] < 20  # the speaker talks through most of the 20 s
    manifest = preprocessed.read_manifest("ingest")
    assert manifest["inputs"]  # the raw take and the consent record are hashed
    assert {k.split("/")[-1] for k in manifest["inputs"]} == {"take1.mp4", "consent.yaml"}


def test_broken_takes_are_reported_and_the_good_one_processed(footage, clips, tmp_path):
    ws = make_clone(tmp_path, "mixed", {
        "a_good.mp4": clips["man20"],
        "b_not_a_video.mp4": footage / "bad_not_a_video.mp4",
        "c_truncated.mp4": footage / "bad_truncated.mp4",
        "d_no_audio.mp4": footage / "bad_no_audio_3s.mp4",
        "e_silent.mp4": footage / "bad_silent_audio_12s.mp4",
        "f_music.mp4": footage / "music_woman_15s.mp4",
    })
    run(tmp_path, "mixed", "stage=ingest")
    takes = _takes(ws)
    assert takes["a_good.mp4"]["status"] == "ok"
    codes = {name: t.get("code") for name, t in takes.items() if t["status"] == "rejected"}
    assert codes == {"b_not_a_video.mp4": "not_video", "c_truncated.mp4": "truncated",
                     "d_no_audio.mp4": "no_audio", "e_silent.mp4": "silent_audio"}
    assert "d_no_audio.wav" in takes["d_no_audio.mp4"]["fix"]  # the fix names the file to add
    assert "upload" in takes["c_truncated.mp4"]["reason"] and "cut short" in takes["c_truncated.mp4"]["reason"]
    # Music: kept for the face, flagged as unusable for lip-sync.
    assert takes["f_music.mp4"]["status"] == "ok" and not takes["f_music.mp4"]["lipsync"]
    warnings = ws.read_manifest("ingest")["warnings"]
    assert any("f_music.mp4" in w and "music" in w for w in warnings)
    frames = np.load(ws.stage_dir("ingest") / "frames.npz")
    assert frames["lipsync"].sum() == takes["a_good.mp4"]["frames"]  # only the speech take trains lip-sync


def test_only_music_is_not_lipsync_ready(footage, tmp_path):
    ws = make_clone(tmp_path, "music", {"m.mp4": footage / "music_woman_33s.mp4"})
    run(tmp_path, "music", "stage=ingest")
    m = ws.read_manifest("ingest")
    assert m["counts"]["lipsync_ready"] is False
    assert any("cannot be trained for lip-sync" in w for w in m["warnings"])


def test_too_little_footage_is_refused_and_names_the_reasons(footage, tmp_path):
    make_clone(tmp_path, "short", {"x.mp4": footage / "bad_no_audio_3s.mp4", "y.mp4": footage / "bad_not_a_video.mp4"})
    with pytest.raises(NotEnoughFootageError, match=r"0\.0 s of usable footage, 10\.0 s short of the minimum of 10 s "
                                                   r"\(ingest\.min_duration_s\).*x\.mp4: has no sound track"):
        run(tmp_path, "short", "stage=ingest")
    assert not (tmp_path / "work" / "short" / "ingest").exists()


def test_a_one_take_failure_gives_that_takes_own_fix(footage, tmp_path):
    make_clone(tmp_path, "one", {"x.mp4": footage / "bad_no_audio_3s.mp4"})
    with pytest.raises(NotEnoughFootageError) as err:
        run(tmp_path, "one", "stage=ingest")
    assert "x.mp4: put the take's recorded sound beside it as x.wav" in err.value.fix


def test_silent_video_with_sound_beside_it_and_rotation(footage, tmp_path):
    # A phone clip whose picture is stored sideways with rotation metadata, sound in a separate wav.
    rotated = tmp_path / "src.mp4"
    ffmpeg("-i", str(footage / "vertical_no_audio_12s.mp4"), "-c", "copy", "-metadata:s:v:0", "rotate=90", str(rotated))
    # The sound's extension in upper case, as cameras and Windows write it.
    ws = make_clone(tmp_path, "phone", {"clip.mp4": rotated, "clip.WAV": footage / "driving_speech_en_60s.wav"})
    run(tmp_path, "phone", "stage=ingest")
    take = _takes(ws)["clip.mp4"]
    assert take["status"] == "ok" and take["sound_from"] == "clip.WAV" and take["rotation"] in (90, 270)
    assert (take["width"], take["height"]) == (1280, 720)  # upright after rotation
    assert any("60.0 s but the picture 11.7 s" in w for w in ws.read_manifest("ingest")["warnings"])


def test_missing_consent_stops_ingest(clips, tmp_path):
    make_clone(tmp_path, "nocons", {"a.mp4": clips["man20"]}, consent=False)
    with pytest.raises(ConsentError, match="no consent record"):
        run(tmp_path, "nocons", "stage=ingest")


def test_a_crafted_clone_name_writes_nothing_anywhere(tmp_path):
    root = tmp_path / "a" / "b" / "root"
    root.mkdir(parents=True)
    proc = subprocess.run([sys.executable, "-m", "clonetrain", "stage=ingest", "clone=a/../../../../../X",
                           f"paths.root={root}"], capture_output=True, text=True)
    assert proc.returncode == 2 and "is not allowed" in proc.stderr and "Traceback" not in proc.stderr
    assert [p for p in tmp_path.rglob("*") if p != root and root not in p.parents] == [tmp_path / "a", tmp_path / "a" / "b"]
    assert not any(root.iterdir())  # not even Hydra's log folder


def test_cli_reports_errors_without_a_traceback(tmp_path):
    for clone, expect in (("../x", "is not allowed"), ("nobody", "does not exist")):
        proc = subprocess.run([sys.executable, "-m", "clonetrain", "stage=ingest", f"clone={clone}", f"paths.root={tmp_path}"],
                              capture_output=True, text=True)
        assert proc.returncode == 2, proc.stderr
        out = proc.stdout + proc.stderr
        assert expect in out and "Traceback" not in out


def test_a_file_ffprobe_cannot_finish_reading_is_a_clear_footage_error(footage, monkeypatch):
    from clonetrain.core.errors import FootageError
    from clonetrain.media import probe

    assert probe.probe(footage / "talk_woman_8s.mp4").duration_s > 7  # read as usual under the limit
    monkeypatch.setattr(probe, "PROBE_TIMEOUT_S", 0.001)  # as if ffprobe hung on a crafted file
    with pytest.raises(FootageError, match="did not finish") as caught:
        probe.probe(footage / "talk_woman_8s.mp4")
    assert caught.value.code == "unreadable" and caught.value.fix
    with pytest.raises(FootageError, match="did not finish"):
        probe.probe_audio(footage / "split_woman_10s.wav")
