"""What a render says, when it is not the given audio as is: text spoken by the TTS, or anyone's speech, in the
clone's voice. Called by stage=render; returns the sound to lip-sync to and what the provenance must record.

    python -m clonetrain stage=render clone=anna audio=actor.wav voice=true
    python -m clonetrain stage=render clone=anna text="Welcome back to the stream."
    python -m clonetrain stage=render clone=anna text_file=script.txt
"""

from __future__ import annotations

import hashlib
import logging
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import soundfile as sf

from clonetrain.core.errors import ClonetrainError
from clonetrain.product import voice_package
from clonetrain.voice import tts as tts_mod

log = logging.getLogger(__name__)


class VoiceRenderError(ClonetrainError):
    """A voice render that cannot start: text and audio both given, an unreadable text file, no voice."""


@dataclass
class Script:
    """The speech a render starts from, before conversion."""
    wav: np.ndarray          # 16 kHz float32
    stem: str                # names the output file
    provenance: dict         # what it came from (kind, sha256, tts)


def wants_voice(cfg) -> bool:
    return bool(cfg.voice or cfg.text or cfg.text_file)


def read_text(cfg) -> str:
    if cfg.text and cfg.text_file:
        raise VoiceRenderError("both text= and text_file= were given", "give one of them")
    if cfg.text_file:
        path = Path(cfg.text_file).expanduser()
        if not path.is_file():
            raise VoiceRenderError(f"text file {path} does not exist", "check the path given as text_file=")
        try:
            return path.read_text(encoding="utf-8")
        except UnicodeDecodeError:
            raise VoiceRenderError(f"{path.name} is not UTF-8 text", "save the script as plain UTF-8 text") from None
    return str(cfg.text)


def script_from_text(cfg, sr: int) -> Script:
    """Checks first (fast, clear errors), then the TTS speaks."""
    if cfg.audio:
        raise VoiceRenderError("both audio= and text were given", "give audio=... voice=true, or text=..., not both")
    c = cfg.voice_model
    text = tts_mod.check_text(read_text(cfg), c.language, c.max_text_chars)
    engine = tts_mod.load(c.tts, c.tts_noise)
    wav = tts_mod.speak(engine, text, c.language, c.max_text_chars)
    if sr != tts_mod.SAMPLE_RATE:
        import librosa

        wav = librosa.resample(wav, orig_sr=tts_mod.SAMPLE_RATE, target_sr=sr)
    sha = hashlib.sha256(text.encode("utf-8")).hexdigest()
    stem = Path(cfg.text_file).stem if cfg.text_file else f"text-{sha[:10]}"
    return Script(wav=wav, stem=stem, provenance={"source": "text", "source_sha256": sha, "tts": engine.name,
                                                  "language": c.language, "characters": len(text.strip())})


def script(cfg, read_speech) -> Script:
    """The speech to convert: the text spoken by the TTS, or audio= as is (read by render's `read_speech`)."""
    if cfg.text or cfg.text_file:
        return script_from_text(cfg, tts_mod.SAMPLE_RATE)
    from clonetrain.core.manifest import sha256_file

    path, wav = read_speech(cfg.audio, tts_mod.SAMPLE_RATE)
    return Script(wav=wav, stem=path.stem, provenance={"source": "audio", "source_sha256": sha256_file(path),
                                                       "source_file": path.name})


def convert(script: Script, av, ws, out: Path) -> tuple[Path, dict]:
    """The script in the clone's voice (the package's voice model, else the voice stage's), written as a WAV
    beside `out` (the render muxes it), and the provenance to add."""
    from clonetrain.core.manifest import sha256_file
    from clonetrain.voice.model import VoiceModel

    clone = av.clone
    pkg = av.package_dir
    voice_path = voice_package.find(pkg, None if pkg else ws)
    if voice_path is None:
        why_none = voice_package.why_none(pkg, None if pkg else ws)
        raise VoiceRenderError(f"clone {clone!r} has no voice: {why_none}",
                               "render its own recorded speech with audio=... (without voice=true), or rebuild the "
                               "clone from footage with more clean speech")
    vm = VoiceModel.load(voice_path)
    from_tts = script.provenance.get("source") == "text"
    if from_tts:
        vm = vm.for_tts(tts_mod.conversion_of(script.provenance["tts"]))
    t0 = time.perf_counter()
    wav = vm.convert(script.wav, from_tts=from_tts)
    log.info("voice: %.1f s of speech converted to %s's voice in %.1f s", len(wav) / 16000, clone,
             time.perf_counter() - t0)
    path = out.with_suffix(".voice.wav")
    path.parent.mkdir(parents=True, exist_ok=True)
    from clonetrain.core.workspace import atomic_path

    with atomic_path(path) as tmp:
        sf.write(tmp, np.clip(wav, -1, 1), 16000, subtype="PCM_16", format="WAV")
    return path, {**script.provenance, "voice": "generated", "voice_clone": clone,
                  "voice_model_sha256": sha256_file(voice_path), "voice_method": "knn-whisper-world"}
