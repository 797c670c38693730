"""Transcripts of real takes: words inside the take, in order, and the language right."""

import json

from conftest import ffmpeg, make_clone, run


def _check_words(take: dict) -> None:
    words = take["words"]
    assert len(words) > 5
    starts = [w["start"] for w in words]
    assert starts == sorted(starts)
    assert all(0 <= w["start"] <= w["end"] <= take["duration_s"] for w in words)


def test_transcribe_english_take_has_timed_words_and_language(preprocessed):
    out = json.loads((preprocessed.stage_dir("transcribe") / "transcript.json").read_text())
    (take,) = out["takes"]
    assert take["language"] == "en" and take["language_probability"] > 0.8
    assert abs(take["duration_s"] - 20.0) < 0.05
    _check_words(take)
    # 20 s of continuous talk: the words span most of it.
    assert take["words"][0]["start"] < 3 and take["words"][-1]["end"] > 16
    page = (preprocessed.stage_dir("report") / "report.html").read_text()
    assert "What is said" in page and take["words"][3]["word"] in page


def test_transcribe_detects_german(footage, tmp_path):
    clip = tmp_path / "de.mp4"
    ffmpeg("-i", str(footage / "talk_de_anchor_20s.mp4"), "-t", "11", "-c:v", "libx264", "-preset", "ultrafast",
           "-c:a", "aac", str(clip))
    ws = make_clone(tmp_path / "data", "de", {"de.mp4": clip})
    run(tmp_path / "data", "de", "stage=ingest")
    assert run(tmp_path / "data", "de", "stage=transcribe") == {"transcribe": "ran"}
    (take,) = json.loads((ws.stage_dir("transcribe") / "transcript.json").read_text())["takes"]
    assert take["language"] == "de"
    _check_words(take)
    assert "debatte" in take["text"].lower()
    assert run(tmp_path / "data", "de", "stage=transcribe") == {"transcribe": "skipped"}


def test_the_same_sound_gives_the_same_words(footage, tmp_path):
    """Singing over music fails greedy decoding's checks; the words must still not depend on the run (a
    rerun of a stage, a benchmark's WER), so nothing is sampled."""
    import soundfile as sf

    from clonetrain.voice import asr

    wav = tmp_path / "sung.wav"
    ffmpeg("-i", str(footage / "music_woman_15s.mp4"), "-ac", "1", "-ar", "16000", str(wav))
    sound, _ = sf.read(wav, dtype="float32")
    first = asr.transcribe(sound, word_timestamps=False)
    assert first["text"] and asr.transcribe(sound, word_timestamps=False) == first
