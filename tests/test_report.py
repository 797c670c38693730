"""The studio report: verdict, findings, plots, thumbnails and a playable preview."""

import json

import ffmpeg

from conftest import make_clone, run


def test_report_gives_a_verdict_plots_and_thumbnails(preprocessed):
    d = preprocessed.stage_dir("report")
    report = json.loads((d / "report.json").read_text())
    assert report["level"] == "ok" and report["ready_for_lipsync"]
    assert report["numbers"]["usable_face_pct"] > 95
    page = (d / "report.html").read_text()
    assert page.count("<svg") == 4  # face per second, mouth vs energy, head pose, one offset curve
    assert page.count("data:image/jpeg;base64,") == 10
    assert "take1.mp4" in page and "Good footage for a clone" in page


def test_preview_is_a_playable_video_with_sound(preprocessed):
    info = ffmpeg.probe(str(preprocessed.stage_dir("report") / "footage_check.mp4"))
    kinds = {s["codec_type"] for s in info["streams"]}
    assert kinds == {"video", "audio"}
    assert abs(float(info["format"]["duration"]) - 20.0) < 0.2


def test_music_footage_gets_a_not_ready_verdict(footage, tmp_path):
    ws = make_clone(tmp_path, "music", {"m.mp4": footage / "music_woman_15s.mp4"})
    run(tmp_path, "music", "stage=preprocess")
    report = json.loads((ws.stage_dir("report") / "report.json").read_text())
    assert report["level"] == "bad" and not report["ready_for_lipsync"]
    assert "Not ready for lip-sync training" in report["verdict"] and "(ingest.min_speech_s)" in report["verdict"]
    assert any("music" in f for f in report["findings"])
