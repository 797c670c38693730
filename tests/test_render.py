"""Render new speech with a (tiny) trained clone: playable, right length, labelled, with provenance."""

import datetime as dt
import json

import ffmpeg
import numpy as np
import pytest

from clonetrain.errors import ConsentError
from clonetrain.media.convert import iter_frames
from clonetrain.stages import render
from clonetrain.stages.render import RenderError
from clonetrain.workspace import Workspace
from conftest import ffmpeg as run_ffmpeg
from conftest import TINY, run


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
    assert json.loads(out.with_suffix(".provenance.json").read_text())["frames"] == 83
    # The label: a dark box with white text in the top-left corner of every frame (the footage is bright there).
    frames = np.concatenate(list(iter_frames(out, 256, 256)))
    corner = frames[:, 2:18, 2:90].astype(float).mean(-1)
    assert np.all(corner.mean((1, 2)) < 110) and np.all((corner > 200).mean((1, 2)) > 0.05)
    # Away from the label and the mouth the picture is the footage's own.
    source = np.concatenate(list(iter_frames(trained / "work" / "man" / "ingest" / "takes" / "000.mp4", 256, 256)))
    assert abs(frames[:, 2:18, 150:250].mean() - source[:400, 2:18, 150:250].mean()) < 12


def test_render_refuses_what_is_not_audio(trained, footage):
    with pytest.raises(RenderError, match="not an audio file"):
        run(trained, "man", "stage=render", f"audio={footage / 'bad_not_a_video.mp4'}", *TINY)
    with pytest.raises(RenderError, match="needs the speech"):
        run(trained, "man", "stage=render", *TINY)


def test_render_refuses_after_consent_expired(trained):
    record = json.loads((Workspace(trained, "man").stage_dir("ingest") / "consent.json").read_text())
    render.check_consent(record, "man")  # valid today
    with pytest.raises(ConsentError, match="expired"):
        render.check_consent(record, "man", today=dt.date.today() + dt.timedelta(days=400))
