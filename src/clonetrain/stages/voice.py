"""voice: the person's voice model, built from the footage's own speech, and its evaluation.

Reads  ingest/audio.wav, ingest/vad.json, ingest/takes.json, transcribe/transcript.json
Writes voice.npz      the voice model (clonetrain.voice.model.VoiceModel; numpy only to load)
       voice.json     available (or why not), the speech used and held out, the evaluation (metrics, baselines,
                      targets), timings
       samples/       the evaluation's sounds, to listen to: held-out speech and its reconstruction, text spoken by
                      the TTS, converted, and with its pitch moved only (when the tts extra is installed)

The last `voice_model.holdout` of the speech (by speech time) is never used to build the voice: it is the reference the
similarity is measured against, and the speech whose reconstruction gives the MCD. A clone with less speech than
`voice_model.min_speech_s` gets no voice (voice.json says why) and the rest of the pipeline carries on.

    python -m clonetrain stage=voice clone=anna voice_model.k=6 voice_model.tts_k=12
"""

from __future__ import annotations

import time
from pathlib import Path

import numpy as np
import soundfile as sf
from omegaconf import DictConfig

from clonetrain.audio_analysis import whisper
from clonetrain.contract import files
from clonetrain.contract.reads import whole
from clonetrain.core.errors import ClonetrainError
from clonetrain.core.manifest import StageResult
from clonetrain.voice import judge, tts as tts_mod, world
from clonetrain.voice.model import VoiceModel, VoiceSettings
from clonetrain.core.workspace import Workspace, atomic_path

SR = 16000


def split_speech(segments: list, holdout: float) -> tuple[list, list]:
    """(build, held out): the speech segments cut where the last `holdout` share of the speech time begins."""
    total = sum(e - s for s, e in segments)
    cut_at, acc, build, held = (1 - holdout) * total, 0.0, [], []
    for s, e in segments:
        if acc + (e - s) <= cut_at:
            build.append((s, e))
        elif acc >= cut_at:
            held.append((s, e))
        else:
            mid = s + cut_at - acc
            build.append((s, mid))
            held.append((mid, e))
        acc += e - s
    return build, held


def speech_segments(cfg: DictConfig, ws: Workspace) -> list[tuple[float, float]]:
    """The VAD's speech segments (ingest timeline, seconds) of the takes that are mostly speech: music or
    background takes would teach the wrong voice."""
    takes = [t for t in files.read_json(ws, "ingest", "takes") if t["status"] == "ok"]
    spans = [(t["first_frame"] / cfg.ingest.fps, (t["first_frame"] + t["frames"]) / cfg.ingest.fps)
             for t in takes if t["lipsync"]]
    return [(s, e) for s, e in files.read_json(ws, "ingest", "vad")["segments"]
            if any(a <= s < b for a, b in spans)]


# Languages whose words are told apart by their pitch contour: the person's pitch at the matched frames would
# overwrite the source's tones (talk_zh_woman_15s: character error 0.64 with the source's melody, 0.75 matched).
TONAL_LANGUAGES = {"zh", "yue", "vi", "th", "lo", "my", "yo"}


def settings_of(c, language: str = "en") -> VoiceSettings:
    """The voice model's settings; voice_model.f0=auto is the matched pitch, except for a tonal language."""
    if c.f0 not in ("auto", "matched", "moved"):
        raise ClonetrainError(f"voice_model.f0={c.f0!r} is not a pitch method", "use auto, matched or moved")
    f0 = c.f0 if c.f0 != "auto" else ("moved" if language in TONAL_LANGUAGES else "matched")
    if c.tts_f0 not in ("matched", "moved"):
        raise ClonetrainError(f"voice_model.tts_f0={c.tts_f0!r} is not a pitch method", "use matched or moved")
    if c.tts_context < 0:
        raise ClonetrainError(f"voice_model.tts_context={c.tts_context} is negative",
                              "use 0 (each frame matched alone) or a weight such as 0.7")
    return VoiceSettings(layers=tuple(c.layers), k=c.k, tts_k=c.tts_k, level=c.level, gv=c.gv,
                         gv_strength=c.gv_strength, tts_gv_strength=c.tts_gv_strength,
                         normalise_content=c.normalise_content, f0=f0, tts_f0=c.tts_f0, tts_context=c.tts_context)


def _cut(wav: np.ndarray, segments: list) -> np.ndarray:
    return np.concatenate([wav[int(s * SR) : int(e * SR)] for s, e in segments]) if segments else wav[:0]


def _write_wav(path: Path, wav: np.ndarray) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    with atomic_path(path) as tmp:
        sf.write(tmp, np.clip(wav, -1, 1), SR, subtype="PCM_16", format="WAV")


def _heldout_text(ws: Workspace, held: list) -> tuple[str, str]:
    """The transcript words inside the `held` speech segments, and their language."""
    t = files.read_json(ws, "transcribe", "transcript")
    words, langs = [], []
    for take in t["takes"]:
        for w in take["words"]:
            mid = take["first_s"] + (w["start"] + w["end"]) / 2
            if any(s <= mid < e for s, e in held):
                words.append(w["word"])
                langs.append(take["language"])
    return " ".join(words), max(set(langs), key=langs.count) if langs else "en"


def evaluate(cfg: DictConfig, vm: VoiceModel, wav: np.ndarray, analysis: world.Analysis, feats: np.ndarray,
             held: list, held_text: str, language: str, out_dir: Path) -> tuple[dict, list[str], dict | None]:
    """Similarity to the held-out speech, WER and MCD of the voice and of the baselines; notes; the text-to-speech
    engine that spoke the TTS rows and the settings they were converted with (None: none installed)."""
    c = cfg.voice_model
    notes: list[str] = []
    held_wav = _cut(wav, held)
    reference = judge.embed(held_wav)
    metrics: dict[str, dict] = {}

    # Held-out speech reconstructed through the voice model: its own words, its own pitch, the model's envelopes.
    frames = np.zeros(len(analysis.f0), bool)
    for s, e in held:
        frames[int(s * 1000 / world.FRAME_MS) : int(e * 1000 / world.FRAME_MS)] = True
    conv = vm.convert_analysis(analysis, feats)
    recon = world.synthesise(conv.f0, conv.mcep, conv.ap)
    recon_held = _cut(np.pad(recon, (0, max(0, len(wav) - len(recon)))), held)
    voiced = frames & (analysis.f0 > 0)
    metrics["heldout_reconstructed"] = {
        "mcd_db": round(world.mcd(conv.mcep, analysis.mcep, voiced), 3),
        "speaker_similarity": judge.similarity(recon_held, reference)}
    if held_text:
        metrics["heldout_reconstructed"].update(
            {f"{k}_vs_transcript": v for k, v in judge.intelligibility([recon_held], [held_text], language,
                                                                        models=("base",)).items()})
    _write_wav(files.output(out_dir, "voice", "sample", "heldout_original"), held_wav)
    _write_wav(files.output(out_dir, "voice", "sample", "heldout_reconstructed"), recon_held)

    try:
        engine = tts_mod.fresh(c.tts, c.tts_noise, seed=0)  # seeded: runs compare on the same sound
        vm = vm.for_tts(engine.conversion)
    except tts_mod.TextToSpeechError as err:
        notes.append(f"voice evaluated without text to speech: {err.message}")
        return metrics, notes, None
    texts = list(c.eval_sentences)
    spoken = [tts_mod.speak(engine, t, "en", c.max_text_chars) for t in texts]
    converted, seconds = [], 0.0
    for x in spoken:
        t0 = time.perf_counter()
        converted.append(vm.convert(x, from_tts=True))
        seconds += time.perf_counter() - t0
    shifted = [vm.pitch_moved_only(x) for x in spoken]
    for name, wavs in (("converted_tts", converted), ("tts", spoken), ("f0_shift_tts", shifted)):
        metrics[name] = {"speaker_similarity": judge.similarity(np.concatenate(wavs), reference),
                         **judge.intelligibility(wavs, texts, "en")}
        for i, w in enumerate(wavs[:2]):
            _write_wav(files.output(out_dir, "voice", "sample", f"{name}_{i}"), w)
    metrics["converted_tts"]["conversion_rtf"] = judge.rtf(seconds, sum(len(x) for x in spoken) / SR)
    return metrics, notes, {"name": engine.name, "conversion": {k: getattr(vm.settings, k) for k in
                                                          ("tts_k", "tts_gv_strength", "tts_f0", "tts_context")}}


def targets(metrics: dict) -> dict:
    conv = metrics.get("converted_tts")
    if not conv:
        return {}
    return {"speaker_similarity_tts": {"value": conv["speaker_similarity"], "goal": ">= 0.90",
                                       "met": conv["speaker_similarity"] >= 0.90},
            "beats_unconverted_tts": {"value": round(conv["speaker_similarity"] - metrics["tts"]["speaker_similarity"], 4),
                                      "goal": "> 0 (similarity above the TTS's own voice)",
                                      "met": conv["speaker_similarity"] > metrics["tts"]["speaker_similarity"]},
            "wer_base": {"value": conv["wer_base"], "goal": "<= 0.10", "met": conv["wer_base"] <= 0.10},
            "wer_tiny": {"value": conv["wer_tiny"], "goal": "<= 0.15", "met": conv["wer_tiny"] <= 0.15}}


def run(cfg: DictConfig, ws: Workspace, out_dir: Path) -> StageResult:
    c = cfg.voice_model
    started = time.perf_counter()
    wav, sr = sf.read(files.path(ws, "ingest", "audio"), dtype="float32")
    if sr != SR:
        raise ClonetrainError(f"the voice needs 16 kHz sound, ingest wrote {sr} Hz", "run with ingest.sample_rate=16000")
    segments = speech_segments(cfg, ws)
    speech_s = sum(e - s for s, e in segments)
    result = StageResult()
    record = {"available": False, "speech_s": round(speech_s, 2), "min_speech_s": c.min_speech_s,
              "settings": whole(c)}
    if speech_s < c.min_speech_s:
        record["reason"] = (f"only {speech_s:.1f} s of clean speech in the footage; a voice needs at least "
                            f"{c.min_speech_s:g} s (voice_model.min_speech_s)")
        files.write_record(out_dir, "voice", "record", record)
        result.warnings.append(f"no voice: {record['reason']}. The lip-sync clone is built without one; add takes "
                               "of the person speaking for a voice")
        result.counts = {"available": False, "speech_s": round(speech_s, 2)}
        result.summary = [f"no voice: {record['reason']}"]
        return result

    build, held = split_speech(segments, c.holdout)
    settings = settings_of(c, _heldout_text(ws, segments)[1])
    feats = whisper.encode(wav, layers=settings.layers, subtract_silence=settings.subtract_silence)
    analysis = world.analyse(wav)
    vm = VoiceModel.build(wav, build, settings, analysis=analysis, features=feats)
    vm.info.update({"clone": ws.clone, "built_from_s": [round(build[0][0], 2), round(build[-1][1], 2)]})
    vm.save(files.output(out_dir, "voice", "model"))
    build_seconds = time.perf_counter() - started

    held_text, language = _heldout_text(ws, held)
    metrics, notes, tts_engine = (evaluate(cfg, vm, wav, analysis, feats, held, held_text, language, out_dir)
                                  if c.evaluate else ({}, [], None))
    result.warnings.extend(notes)
    record.update({
        "available": True, "language": language,
        "train_speech_s": round(sum(e - s for s, e in build), 2), "heldout_speech_s": round(sum(e - s for s, e in held), 2),
        "heldout_from_s": round(held[0][0], 3) if held else None, "heldout_text": held_text,
        "pitch": vm.settings.f0, "log_f0_mean": round(vm.log_f0_mean, 4), "log_f0_std": round(vm.log_f0_std, 4),
        "f0_median_hz": round(float(np.exp(vm.log_f0_mean)), 1),
        "metrics": metrics, "tts_engine": tts_engine and tts_engine["name"],
        "tts_conversion": tts_engine and tts_engine["conversion"], "targets": targets(metrics),
        "seconds": {"build": round(build_seconds, 2), "total": round(time.perf_counter() - started, 2)},
    })
    files.write_record(out_dir, "voice", "record", record)
    result.counts = {"available": True, "train_speech_s": record["train_speech_s"],
                     "heldout_speech_s": record["heldout_speech_s"], "frames": vm.info["frames"]}
    result.summary = [f"voice from {record['train_speech_s']:.0f} s of speech ({vm.info['frames']} frames), "
                      f"{record['heldout_speech_s']:.0f} s held out; pitch {record['f0_median_hz']} Hz"]
    for name, m in metrics.items():
        result.summary.append(f"{name}: " + ", ".join(f"{k} {v}" for k, v in m.items()))
    return result
