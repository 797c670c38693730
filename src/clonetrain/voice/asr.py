"""Speech recognition with faster-whisper over the Whisper models shipped in pip packages (see
clonetrain.audio_analysis.whisper.model_dir): words with timings, the language, and word error rate.

    from clonetrain.voice import asr
    t = asr.transcribe(wav_16k, model="base")      # {"language", "language_probability", "text", "words": [...]}
    asr.wer("the cat sat", t["text"])
"""

from __future__ import annotations

import functools
import re
import unicodedata

import numpy as np

from clonetrain.core.errors import WeightsMissingError

SAMPLE_RATE = 16000
# Languages written without spaces between words: their error rate is counted per character.
CHARACTER_LANGUAGES = {"zh", "ja", "th", "lo", "my", "km", "yue"}


@functools.lru_cache(maxsize=2)
def load(model: str = "base", compute_type: str = "int8", cpu_threads: int = 0):
    """A faster-whisper model from the local CTranslate2 folder (never downloaded)."""
    try:
        from faster_whisper import WhisperModel
    except ImportError:
        raise WeightsMissingError("faster-whisper is not installed, so speech cannot be transcribed",
                                  "pip install faster-whisper") from None
    from clonetrain.audio_analysis import whisper

    return WhisperModel(str(whisper.model_dir(model)), device="cpu", compute_type=compute_type,
                        cpu_threads=cpu_threads, local_files_only=True)


def transcribe(wav_16k: np.ndarray, model: str = "base", language: str | None = None, beam_size: int = 1,
               word_timestamps: bool = True) -> dict:
    """Transcribe 16 kHz mono float audio. Word times are seconds from the start of `wav_16k`.
    `language=None` detects it (tiny.en is English only)."""
    if model.endswith(".en"):
        language = "en"
    # Greedy decoding only: where it fails its checks faster-whisper would sample again at higher temperatures,
    # and the same sound would give other words on a rerun (a garbled 2 s clip read 0.25 or 0.75 WER).
    segments, info = load(model).transcribe(np.asarray(wav_16k, np.float32), language=language,
                                            beam_size=beam_size, word_timestamps=word_timestamps, temperature=0.0,
                                            vad_filter=False, condition_on_previous_text=False)
    words, texts = [], []
    for seg in segments:
        texts.append(seg.text.strip())
        for w in seg.words or []:
            words.append({"word": w.word.strip(), "start": round(float(w.start), 3), "end": round(float(w.end), 3),
                          "probability": round(float(w.probability), 3)})
    return {"language": info.language, "language_probability": round(float(info.language_probability), 4),
            "text": " ".join(t for t in texts if t), "words": words}


def normalise(text: str) -> str:
    """Lower case, punctuation and symbols removed, whitespace collapsed (for error rates)."""
    text = unicodedata.normalize("NFKC", text).lower()
    text = "".join(ch if not unicodedata.category(ch).startswith(("P", "S")) else " " for ch in text)
    return re.sub(r"\s+", " ", text).strip()


def _tokens(text: str, language: str | None) -> list[str]:
    text = normalise(text)
    if language in CHARACTER_LANGUAGES:
        return [ch for ch in text if not ch.isspace()]
    return text.split()


def edit_distance(a: list[str], b: list[str]) -> int:
    prev = list(range(len(b) + 1))
    for i, x in enumerate(a, 1):
        cur = [i]
        for j, y in enumerate(b, 1):
            cur.append(min(prev[j] + 1, cur[j - 1] + 1, prev[j - 1] + (x != y)))
        prev = cur
    return prev[-1]


def wer(reference: str, hypothesis: str, language: str | None = "en") -> float:
    """Word error rate (character error rate for zh/ja/...): edits / reference tokens."""
    ref, hyp = _tokens(reference, language), _tokens(hypothesis, language)
    if not ref:
        return 0.0 if not hyp else 1.0
    return edit_distance(ref, hyp) / len(ref)
