"""transcribe: what is said in every take, word by word with timings, and in which language.

Reads  ingest/audio.wav, ingest/takes.json
Writes transcript.json   per take: language (+ probability), text, words [{word, start, end, probability}] with
                         times in seconds from the start of the take (`first_s` places the take on the ingest
                         timeline)

Whisper (faster-whisper over the CTranslate2 model shipped in pip packages; transcribe.model=base|tiny.en).
The voice stage evaluates against these words; the report shows them.

    python -m clonetrain stage=transcribe clone=anna transcribe.language=de
"""

from __future__ import annotations

import time
from pathlib import Path

import soundfile as sf
from omegaconf import DictConfig

from clonetrain.contract import files
from clonetrain.core.manifest import StageResult
from clonetrain.voice import asr
from clonetrain.core.workspace import Workspace


def run(cfg: DictConfig, ws: Workspace, out_dir: Path) -> StageResult:
    c = cfg.transcribe
    wav, sr = sf.read(files.path(ws, "ingest", "audio"), dtype="float32")
    fps = cfg.ingest.fps
    takes = [t for t in files.read_json(ws, "ingest", "takes") if t["status"] == "ok"]
    result = StageResult()
    rows = []
    started = time.perf_counter()
    for take in takes:
        a, n = take["first_frame"], take["frames"]
        take_wav = wav[a * sr // fps : (a + n) * sr // fps]
        t = asr.transcribe(take_wav, c.model, language=c.language or None, beam_size=c.beam_size)
        duration = len(take_wav) / sr
        # Whisper can place the last word's end a little past the sound; clip into the take.
        for w in t["words"]:
            w["start"], w["end"] = min(w["start"], duration), min(w["end"], duration)
        rows.append({"take": take["take"], "file": take["file"], "first_s": round(a / fps, 3),
                     "duration_s": round(duration, 3), **t})
        if take["speech_s"] > 1 and not t["words"]:
            result.warnings.append(f"{take['file']}: {take['speech_s']:.0f} s of speech but no words recognised")
    files.write_record(out_dir, "transcribe", "transcript", {"model": c.model, "takes": rows})
    seconds = time.perf_counter() - started
    total = sum(r["duration_s"] for r in rows)
    languages = sorted({r["language"] for r in rows if r["words"]})
    result.counts = {"takes": len(rows), "words": sum(len(r["words"]) for r in rows), "languages": languages,
                     "real_time_factor": round(seconds / max(total, 1e-6), 3)}
    result.summary = [f"{r['file']}: {r['language']} ({r['language_probability']:.2f}), {len(r['words'])} words: "
                      f"{r['text'][:80]}{'...' if len(r['text']) > 80 else ''}" for r in rows]
    return result
