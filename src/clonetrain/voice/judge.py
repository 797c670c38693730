"""How well a voice matches the person and stays intelligible: speaker similarity (resemblyzer's GE2E
d-vectors, cosine; the same speaker scores 0.95-0.985 here, different people 0.54-0.72), word error rate by two
independent Whisper models (base, tiny.en) against the text, and mel-cepstral distortion."""

from __future__ import annotations

import functools
import warnings

import numpy as np

from clonetrain.core.errors import WeightsMissingError
from clonetrain.voice import asr

SAMPLE_RATE = 16000


@functools.lru_cache(maxsize=1)
def _encoder():
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # webrtcvad imports pkg_resources (setuptools<81 is pinned for it)
            from resemblyzer import VoiceEncoder
    except ImportError as err:
        raise WeightsMissingError(f"resemblyzer cannot be imported ({err}), so speaker similarity cannot be measured",
                                  'pip install resemblyzer "setuptools<81"') from None
    return VoiceEncoder("cpu", verbose=False)


def embed(wav: np.ndarray) -> np.ndarray:
    from resemblyzer import preprocess_wav

    return _encoder().embed_utterance(preprocess_wav(np.asarray(wav, np.float32), SAMPLE_RATE))


def similarity(wav: np.ndarray, reference: np.ndarray) -> float:
    """Cosine similarity of the speaker embeddings of `wav` and a reference embedding (unit vectors)."""
    return round(float(embed(wav) @ reference), 4)


def intelligibility(wavs: list[np.ndarray], texts: list[str], language: str = "en",
                    models: tuple[str, ...] = ("base", "tiny.en")) -> dict[str, float]:
    """{wer_base, wer_tiny}: word error rate over all `texts` (total edits / total reference words)."""
    out = {}
    for model in models:
        if model.endswith(".en") and language != "en":
            continue
        edits = words = 0
        for wav, text in zip(wavs, texts):
            hyp = asr.transcribe(wav, model, language=language, word_timestamps=False)["text"]
            n = len(asr._tokens(text, language))
            edits += round(asr.wer(text, hyp, language) * n)
            words += n
        out["wer_" + model.split(".")[0]] = round(edits / max(words, 1), 4)
    return out


def rtf(seconds: float, audio_seconds: float) -> float:
    return round(seconds / max(audio_seconds, 1e-6), 3)
