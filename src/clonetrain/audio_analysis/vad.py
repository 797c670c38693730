"""Voice activity with Silero VAD, whose model ships inside the silero-vad wheel (works offline)."""

from __future__ import annotations

from functools import lru_cache

import numpy as np


@lru_cache(maxsize=1)
def _model():
    from silero_vad import load_silero_vad

    return load_silero_vad(onnx=False)


def speech_segments(wav: np.ndarray, sample_rate: int = 16000, min_speech_ms: int = 250) -> list[tuple[float, float]]:
    """Speech as [(start_s, end_s), ...]. `wav` is mono float32 at 16 kHz (Silero's native rate)."""
    import torch
    from silero_vad import get_speech_timestamps

    if wav.size < sample_rate // 10 or not np.any(wav):
        return []
    stamps = get_speech_timestamps(torch.from_numpy(np.ascontiguousarray(wav, np.float32)), _model(),
                                   sampling_rate=sample_rate, min_speech_duration_ms=min_speech_ms)
    return [(s["start"] / sample_rate, s["end"] / sample_rate) for s in stamps]


def total_seconds(segments: list[tuple[float, float]]) -> float:
    return float(sum(e - s for s, e in segments))
