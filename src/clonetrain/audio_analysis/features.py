"""Log-mel spectrogram, per-video-frame speech energy, pitch, speaking rate and a voice profile."""

from __future__ import annotations

import librosa
import numpy as np


def log_mel(wav: np.ndarray, sr: int, n_fft: int, hop: int, win: int, n_mels: int, fmin: float, fmax: float) -> np.ndarray:
    """(T, n_mels) log-mel in dB, clipped at -100 dB. Frame t is centred on sample t * hop."""
    mel = librosa.feature.melspectrogram(y=wav, sr=sr, n_fft=n_fft, hop_length=hop, win_length=win,
                                         n_mels=n_mels, fmin=fmin, fmax=fmax, power=1.0)
    return (20 * np.log10(np.maximum(mel, 1e-5))).T.astype(np.float32)


def frame_energy(wav: np.ndarray, sr: int, fps: int, n_frames: int) -> np.ndarray:
    """Log energy of the voice band (300-3000 Hz) per video frame: what the mouth movement follows."""
    spf = sr // fps
    spec = np.abs(librosa.stft(wav, n_fft=2048, hop_length=spf, win_length=2 * spf, center=True)) ** 2
    freqs = librosa.fft_frequencies(sr=sr, n_fft=2048)
    band = spec[(freqs >= 300) & (freqs <= 3000)].sum(0)
    # STFT frame k is centred on sample k*spf, video frame k covers [k*spf, (k+1)*spf): average k and k+1.
    e = np.log(band + 1e-8)
    e = np.pad(e, (0, max(0, n_frames + 1 - len(e))), mode="edge")
    return ((e[:n_frames] + e[1 : n_frames + 1]) / 2).astype(np.float32)


def pitch_stats(wav: np.ndarray, sr: int, segments: list[tuple[float, float]], fmin: float, fmax: float) -> dict:
    """f0 statistics over speech (YIN; cheap enough for hours of audio, and VAD already says where speech is)."""
    voiced = [wav[int(s * sr) : int(e * sr)] for s, e in segments if e - s > 0.1]
    if not voiced:
        return {"f0_median_hz": None, "f0_p10_hz": None, "f0_p90_hz": None, "f0_semitone_range": None}
    speech = np.concatenate(voiced)
    f0 = librosa.yin(speech, fmin=fmin, fmax=fmax, sr=sr, frame_length=1024, hop_length=256)
    rms = librosa.feature.rms(y=speech, frame_length=1024, hop_length=256)[0][: len(f0)]
    f0 = f0[: len(rms)][rms > np.percentile(rms, 40)]  # quiet frames give octave errors
    f0 = f0[(f0 > fmin * 1.05) & (f0 < fmax * 0.95)]
    if f0.size < 10:
        return {"f0_median_hz": None, "f0_p10_hz": None, "f0_p90_hz": None, "f0_semitone_range": None}
    p10, p50, p90 = np.percentile(f0, [10, 50, 90])
    return {"f0_median_hz": round(float(p50), 1), "f0_p10_hz": round(float(p10), 1),
            "f0_p90_hz": round(float(p90), 1), "f0_semitone_range": round(float(12 * np.log2(p90 / p10)), 2)}


def speaking_rate(wav: np.ndarray, sr: int, segments: list[tuple[float, float]]) -> float | None:
    """Syllable-like energy peaks per second of speech (onsets of the 300-3000 Hz envelope)."""
    total = sum(e - s for s, e in segments)
    if total < 1.0:
        return None
    count = 0
    for s, e in segments:
        seg = wav[int(s * sr) : int(e * sr)]
        if seg.size < sr // 5:
            continue
        env = librosa.onset.onset_strength(y=seg, sr=sr, hop_length=160, fmin=300, fmax=3000, n_mels=40)
        peaks = librosa.util.peak_pick(env, pre_max=5, post_max=5, pre_avg=10, post_avg=10, delta=0.5, wait=10)
        count += len(peaks)
    return round(count / total, 2)


def voice_profile(wav: np.ndarray, sr: int, segments: list[tuple[float, float]]) -> dict:
    """A compact description of the voice over its speech: MFCC mean/std (timbre) and spectral centroid."""
    voiced = [wav[int(s * sr) : int(e * sr)] for s, e in segments if e - s > 0.1]
    if not voiced:
        return {}
    speech = np.concatenate(voiced)
    mfcc = librosa.feature.mfcc(y=speech, sr=sr, n_mfcc=20, n_fft=800, hop_length=200)
    centroid = librosa.feature.spectral_centroid(y=speech, sr=sr, n_fft=800, hop_length=200)
    return {"mfcc_mean": [round(float(v), 3) for v in mfcc.mean(1)],
            "mfcc_std": [round(float(v), 3) for v in mfcc.std(1)],
            "spectral_centroid_hz": round(float(np.median(centroid)), 1)}


def warm_up() -> None:
    """Compile librosa's numba kernels (peak picking, zero crossings, phase) into numba's on-disk cache, on a
    second of noise. The audio stage's first run after an install otherwise spends ~15 s compiling them;
    scripts/install.sh calls this once.

        python -c "from clonetrain.audio_analysis.features import warm_up; warm_up()"
    """
    sr = 16000
    wav = np.random.default_rng(0).standard_normal(2 * sr).astype(np.float32) * 0.1
    log_mel(wav, sr, 800, 200, 800, 80, 55.0, 7600.0)
    frame_energy(wav, sr, 25, 50)
    pitch_stats(wav, sr, [(0.0, 2.0)], 65.0, 400.0)
    speaking_rate(wav, sr, [(0.0, 2.0)])
    voice_profile(wav, sr, [(0.0, 2.0)])
