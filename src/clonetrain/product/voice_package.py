"""The voice inside a clone's package: voice/voice.npz (the model, numpy to load) and voice/voice.json (how it
was built and how it scored). Hooks the package stage calls; the runtime side is `load`."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

from clonetrain.contract import files

FOLDER = "voice"
MODEL, RECORD = files.name_of("voice", "model"), files.name_of("voice", "record")  # their stage names


def add(ws, pkg: Path) -> dict:
    """Copy the voice stage's model and record into the package; returns the manifest's `voice` entry."""
    record_path = files.path(ws, "voice", "record", required=False)
    if files.manifest(ws, "voice") is None or not record_path.is_file():
        return {"available": False, "reason": "the voice stage has not run for this clone"}
    record = json.loads(record_path.read_text())
    (pkg / FOLDER).mkdir(exist_ok=True)
    shutil.copy2(record_path, pkg / FOLDER / RECORD)
    if not record.get("available"):
        return {"available": False, "reason": record.get("reason", "")}
    shutil.copy2(files.path(ws, "voice", "model"), pkg / FOLDER / MODEL)
    return {"available": True, "model": f"{FOLDER}/{MODEL}", "language": record.get("language"),
            "train_speech_s": record.get("train_speech_s"), "heldout_speech_s": record.get("heldout_speech_s")}


def gate_metrics(ws) -> dict:
    """The voice's numbers for the registry entry (and so the nightly gate); {} without a voice."""
    path = files.path(ws, "voice", "record", required=False)
    if not path.is_file():
        return {}
    record = json.loads(path.read_text())
    m = record.get("metrics", {})
    out = {}
    if "converted_tts" in m:
        out["voice_similarity"] = m["converted_tts"]["speaker_similarity"]
        out["voice_similarity_of"] = f"tts {record.get('tts_engine') or 'piper:en_US-joe-medium'}"  # before: Piper
        out["voice_wer_base"] = m["converted_tts"].get("wer_base")
    if "heldout_reconstructed" in m:
        out["voice_mcd_db"] = m["heldout_reconstructed"]["mcd_db"]
        if "voice_similarity" not in out:  # no TTS installed: the held-out speech reconstructed, another measure
            out["voice_similarity"] = m["heldout_reconstructed"]["speaker_similarity"]
            out["voice_similarity_of"] = "heldout_reconstructed"
    return out


def card_section(ws) -> str:
    path = files.path(ws, "voice", "record", required=False)
    if not path.is_file():
        return "\n## Voice\n\nNo voice was built for this clone (the voice stage did not run).\n"
    v = json.loads(path.read_text())
    if not v.get("available"):
        return f"\n## Voice\n\nNo voice: {v.get('reason')}. Renders use the speech given as is.\n"
    spoken_by = (f" Text is spoken by the text-to-speech engine {v['tts_engine']} (its rows below), then converted."
                 if v.get("tts_engine") else "")
    rows = "\n".join(f"| {name} | {m.get('speaker_similarity')} | {m.get('wer_base', m.get('wer_base_vs_transcript'))} "
                     f"| {m.get('wer_tiny', '')} | {m.get('mcd_db', '')} |" for name, m in v["metrics"].items())
    return f"""
## Voice (generated: everything the clone says in this voice is synthetic)

Built from {v['train_speech_s']} s of the person's own speech (language {v['language']}, pitch median
{v['f0_median_hz']} Hz); the last {v['heldout_speech_s']} s of speech held out as the reference. Speech-to-speech by
nearest-neighbour matching of Whisper features over the person's WORLD envelopes.{spoken_by}

| output | speaker similarity to held-out speech | WER (Whisper base) | WER (tiny.en) | MCD dB |
| --- | --- | --- | --- | --- |
{rows}

Not for speech the person would not say, or for any use outside the consent above.
"""


def find(package_path: Path | None, ws=None) -> Path | None:
    """The voice model of a package folder, else of the clone's voice stage; None when there is none."""
    if package_path is not None:
        p = Path(package_path) / FOLDER / MODEL
        return p if p.is_file() else None
    if ws is not None and (p := files.path(ws, "voice", "model", required=False)).is_file():
        return p
    return None


def why_none(package_path: Path | None, ws=None) -> str:
    record = (Path(package_path) / FOLDER / files.name_of("voice", "record") if package_path is not None
              else files.path(ws, "voice", "record", required=False) if ws else None)
    if record is not None and record.is_file():
        return json.loads(record.read_text()).get("reason", "no voice model")
    return "no voice was built for it"
