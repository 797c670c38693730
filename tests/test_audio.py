"""Audio on real footage: mel aligned to frames, speech found, a shifted sound track found and corrected."""

import json

import numpy as np

from conftest import make_clone, run


def test_mel_is_aligned_to_video_frames(preprocessed):
    d = preprocessed.stage_dir("audio")
    mel = np.load(d / "mel.npy")
    assert mel.shape == (500 * 640 // 200 + 1, 80)  # 80 mel frames per second, 3.2 per video frame
    assert np.isfinite(mel).all()
    profile = json.loads((d / "profile.json").read_text())
    assert 14 < profile["usable_speech_s"] <= profile["speech_s"] < 20
    assert 80 < profile["f0_median_hz"] < 200  # a man's voice
    assert 2 < profile["speaking_rate_per_s"] < 8


def test_in_sync_footage_has_no_offset(preprocessed):
    off = json.loads((preprocessed.stage_dir("audio") / "offsets.json").read_text())[0]
    assert off["reliable"] and abs(off["offset_frames"]) <= 1 and off["corrected_frames"] == 0


def test_late_sound_is_found_within_a_frame_and_corrected(clips, tmp_path):
    ws = make_clone(tmp_path, "late", {"late.mp4": clips["man20_late"]})
    run(tmp_path, "late", "stage=preprocess")
    off = json.loads((ws.stage_dir("audio") / "offsets.json").read_text())[0]
    assert off["reliable"] and abs(off["offset_frames"] - 8) <= 1
    assert abs(off["corrected_frames"] - 8) <= 1
    assert any("behind video, corrected" in w for w in ws.read_manifest("audio")["warnings"])
    # After correction the mouth follows the corrected sound at the natural lag again.
    from clonetrain.audio_analysis import features, sync
    import soundfile as sf

    wav, sr = sf.read(ws.stage_dir("audio") / "audio.wav", dtype="float32")
    lm = np.load(ws.stage_dir("landmarks") / "landmarks.npz")
    e = features.frame_energy(wav, sr, 25, len(lm["mouth_open"]))
    again = sync.estimate_offset(lm["mouth_open"], e, lm["valid"], 15)
    from clonetrain.core.config import AudioCfg

    assert abs(again.frames - AudioCfg().mouth_lead_frames) <= 1


def test_an_offset_two_lags_fit_equally_is_not_trusted(preprocessed, tmp_path):
    from clonetrain.audio_analysis import sync

    lm = np.load(preprocessed.stage_dir("landmarks") / "landmarks.npz")
    energy = np.load(preprocessed.stage_dir("audio") / "energy.npy")
    mouth, valid = np.nan_to_num(lm["mouth_open"]), lm["valid"]
    clear = sync.estimate_offset(mouth, energy, valid, 15)
    off = json.loads((preprocessed.stage_dir("audio") / "offsets.json").read_text())[0]
    assert off["peak_margin"] == round(clear.margin(), 3) > 0.05
    # The real mouth blended with itself 8 frames later: two lags now fit about equally.
    twin = mouth + np.r_[np.full(8, mouth[0]), mouth[:-8]]
    both = sync.estimate_offset(twin, energy, valid & np.r_[np.zeros(8, bool), valid[:-8]], 15)
    from clonetrain.core.config import AudioCfg

    assert both.margin() < AudioCfg().min_peak_margin < clear.margin()
    # The audio stage then leaves the sound alone and says why.
    root = tmp_path / "data"
    ws = make_clone(root, "man", {"take1.mp4": preprocessed.raw_dir / "take1.mp4"})
    run(root, "man", "stage=preprocess", "audio_features.min_peak_margin=0.9")
    off = json.loads((ws.stage_dir("audio") / "offsets.json").read_text())[0]
    assert not off["reliable"] and off["corrected_frames"] == 0
    assert any("offset is unclear" in w for w in ws.read_manifest("audio")["warnings"])
