"""The report's sections about what is said and about the voice: the transcript of each take and, once the
voice stage has run, the voice model's evaluation. Kept apart from the footage report so each can change alone."""

from __future__ import annotations

from clonetrain.contract import files

Table = tuple[str, list[str], list[list]]


def transcript_section(ws, max_chars: int = 600) -> list[Table]:
    if files.manifest(ws, "transcribe") is None or not files.exists(ws, "transcribe", "transcript"):
        return []
    rows = []
    for t in files.read_json(ws, "transcribe", "transcript")["takes"]:
        text = t["text"] if len(t["text"]) <= max_chars else t["text"][:max_chars] + " ..."
        span = f"{t['words'][0]['start']:.1f}-{t['words'][-1]['end']:.1f} s" if t["words"] else "no words"
        rows.append([t["file"], f"{t['language']} ({t['language_probability']:.2f})", len(t["words"]), span, text])
    return [("What is said (Whisper transcript per take; language detected)",
             ["take", "language", "words", "words span", "text"], rows)]


def voice_section(ws) -> list[Table]:
    if files.manifest(ws, "voice") is None or not files.exists(ws, "voice", "record"):
        return []
    v = files.read_json(ws, "voice", "record")
    if not v.get("available"):
        return [("Voice", ["status", "reason"], [["no voice", v.get("reason", "")]])]
    rows = [[name, *[m.get(k) for k in ("speaker_similarity", "wer_base", "wer_tiny", "mcd_db")]]
            for name, m in v.get("metrics", {}).items()]
    return [(f"Voice: {v['train_speech_s']:.0f} s of speech used, {v['heldout_speech_s']:.0f} s held out "
             "(similarity to the held-out speech: higher is better; WER and MCD: lower)",
             ["output", "speaker similarity", "WER base", "WER tiny.en", "MCD dB"], rows)]


def sections(ws) -> list[Table]:
    return [*transcript_section(ws), *voice_section(ws)]
