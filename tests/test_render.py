"""Render new speech with a (tiny) trained clone: playable, right length, labelled, with provenance."""

import datetime as dt
import json

import ffmpeg
import numpy as np
import pytest

from clonetrain.core.errors import ConsentError
from clonetrain.media.convert import iter_frames
from clonetrain.stages import render
from clonetrain.stages.render import RenderError
from clonetrain.core.workspace import Workspace
from conftest import assert_labelled, ffmpeg as run_ffmpeg
from conftest import TINY, make_cfg, run


@pytest.fixture(scope="module")
def speech(footage, tmp_path_factory):
    path = tmp_path_factory.mktemp("speech") / "hello.wav"
    run_ffmpeg("-i", str(footage / "driving_speech_en_60s.wav"), "-t", "3.3", str(path))
    return path


def test_render_makes_a_labelled_playable_video_of_the_audio_length(trained, speech, tmp_path):
    out = tmp_path / "out.mp4"
    run(trained, "man", "stage=render", f"audio={speech}", f"render.out={out}", *TINY)
    info = ffmpeg.probe(str(out))
    video = next(s for s in info["streams"] if s["codec_type"] == "video")
    assert {s["codec_type"] for s in info["streams"]} == {"video", "audio"}
    assert (int(video["width"]), int(video["height"])) == (256, 256)  # the footage's own resolution
    assert abs(float(info["format"]["duration"]) - 3.3) <= 0.08
    meta = json.loads(info["format"]["tags"]["comment"])
    assert meta["ai_generated"] and meta["label"] == "AI-generated" and meta["clone"] == "man"
    assert meta["model_sha256"] and meta["consent_sha256"]
    # The mouth's fine detail is the person's own, from their training frames, and the record says so.
    assert meta["mouth_texture"]["from"] == "the clone's own training frames" and meta["mouth_texture"]["frames"] > 0
    assert meta["mouth_texture"]["shape"] == 1.0  # the whole mouth is placed, by default
    assert json.loads(out.with_suffix(".provenance.json").read_text())["frames"] == 83
    # The label: a dark box with white text in the top-left corner of every frame (the footage is bright there).
    frames = np.concatenate(list(iter_frames(out, 256, 256)))
    assert_labelled(frames)
    # Away from the label and the mouth the picture is the footage's own.
    source = np.concatenate(list(iter_frames(trained / "work" / "man" / "ingest" / "takes" / "000.mp4", 256, 256)))
    assert abs(frames[:, 2:18, 150:250].mean() - source[:400, 2:18, 150:250].mean()) < 12


def test_render_refuses_what_is_not_audio(trained, footage):
    with pytest.raises(RenderError, match="not an audio file"):
        run(trained, "man", "stage=render", f"audio={footage / 'bad_not_a_video.mp4'}", *TINY)
    with pytest.raises(RenderError, match="needs the speech"):
        run(trained, "man", "stage=render", *TINY)


@pytest.fixture(scope="module")
def short_speech(footage, tmp_path_factory):
    """The same second of speech as mp3 and as m4a: two files with one stem."""
    d = tmp_path_factory.mktemp("short")
    for ext in ("mp3", "m4a"):
        run_ffmpeg("-i", str(footage / "driving_speech_en_60s.wav"), "-t", "1", str(d / f"speech.{ext}"))
    return d


def test_renders_never_overwrite_an_earlier_deliverable(trained, short_speech, tmp_path):
    first = render.run(make_cfg(trained, "man", "stage=render", f"audio={short_speech / 'speech.mp3'}", *TINY),
                       Workspace(trained, "man"))
    first_bytes = first.read_bytes()
    second = render.run(make_cfg(trained, "man", "stage=render", f"audio={short_speech / 'speech.m4a'}", *TINY),
                        Workspace(trained, "man"))
    assert first.name == "speech.mp4" and second.name == "speech-2.mp4"
    assert first.read_bytes() == first_bytes  # the first deliverable and its provenance are untouched
    assert json.loads(first.with_suffix(".provenance.json").read_text())["audio_sha256"] != \
        json.loads(second.with_suffix(".provenance.json").read_text())["audio_sha256"]
    assert not list(first.parent.glob(".*"))  # no temporary file left
    named = tmp_path / "named.mp4"
    named.write_bytes(b"an earlier deliverable")
    with pytest.raises(RenderError, match="never overwritten"):
        run(trained, "man", "stage=render", f"audio={short_speech / 'speech.mp3'}", f"render.out={named}", *TINY)
    assert named.read_bytes() == b"an earlier deliverable"
    run(trained, "man", "stage=render", f"audio={short_speech / 'speech.mp3'}", f"render.out={named}",
        "render.overwrite=true", *TINY)
    assert ffmpeg.probe(str(named))["format"]["duration"]


def _consent_only_root(trained, tmp_path, edit):
    """A root holding only the clone's consent record, edited: render must refuse before loading anything."""
    raw = tmp_path / "raw" / "man"
    raw.mkdir(parents=True)
    text = (trained / "raw" / "man" / "consent.yaml").read_text()
    if edit is not None:
        (raw / "consent.yaml").write_text(edit(text))
    return tmp_path


@pytest.mark.parametrize("edit, match", [
    (None, "has no consent record"),
    (lambda t: t + f"revoked: {dt.date.today()}\n", "revoked"),
    (lambda t: t.replace("expires:", "expires: 2020-01-02\nold_expires:").replace("date: 2026-01-01", "date: 2020-01-01"),
     "expired on 2020-01-02"),
    (lambda t: t.replace("[pipeline_testing]", "[research]"), "does not permit 'render'"),
])
def test_render_checks_the_live_consent_record(trained, speech, tmp_path, edit, match):
    root = _consent_only_root(trained, tmp_path, edit)
    with pytest.raises(ConsentError, match=match):
        run(root, "man", "stage=render", f"audio={speech}", *TINY)


def test_render_of_a_use_the_consent_does_not_name_is_refused(trained, speech):
    with pytest.raises(ConsentError, match="does not permit 'advertising'"):
        run(trained, "man", "stage=render", f"audio={speech}", "render.use=advertising", *TINY)
    # An action that is not a use (train) must not pass a research-only consent through the back door.
    with pytest.raises(RenderError, match="'train' is not a use"):
        run(trained, "man", "stage=render", f"audio={speech}", "render.use=train", *TINY)


@pytest.mark.parametrize("edit, match", [
    (lambda t: t + f"revoked: {dt.date.today()}\n", "revoked"),
    (lambda t: t.replace("[pipeline_testing]", "[research]"), "does not permit 'render'"),
])
def test_a_stream_checks_the_live_consent_record(trained, speech, tmp_path, edit, match):
    root = _consent_only_root(trained, tmp_path, edit)
    with pytest.raises(ConsentError, match=match):
        run(root, "man", "stage=stream", f"audio={speech}", f"stream.out={tmp_path / 'live.ts'}", *TINY)
    assert not (tmp_path / "live.ts").exists()


def test_a_missing_package_is_a_clear_error(trained, speech, tmp_path):
    from clonetrain.product.clone_package import PackageError

    with pytest.raises(PackageError, match="no package at"):
        run(trained, "man", "stage=render", f"audio={speech}", f"render.package={tmp_path / 'nope.tar.gz'}", *TINY)
