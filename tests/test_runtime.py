"""The live runtime: streams to a local receiver the test starts itself; the frames carry the label and the sound
is what was fed; an interruption goes back to listening footage without a jump; a receiver that goes away is a
clear error, not a hang."""

import json
import shutil
import socket
import subprocess
import time

import numpy as np
import pytest

from clonetrain.product import avatar
from clonetrain.media import convert
from clonetrain.motion import measure
from clonetrain.runtime import FFmpegSink, Session, SinkError
from clonetrain.core.workspace import Workspace
from conftest import assert_labelled, TINY, ffmpeg, make_cfg, run


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def listening(port: int) -> bool:
    """Is something listening on 127.0.0.1:port? Read from /proc: a test connection would use up the receiver's
    one client."""
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        for line in open(table).read().splitlines()[1:]:
            local, state = line.split()[1], line.split()[3]
            if int(local.rsplit(":", 1)[1], 16) == port and state == "0A":
                return True
    return False


def receiver(port: int, dst, *extra: str) -> subprocess.Popen:
    """A local stream receiver: ffmpeg listening on 127.0.0.1, recording what arrives."""
    proc = subprocess.Popen(["ffmpeg", "-v", "error", "-y", "-listen", "1", "-i", f"tcp://127.0.0.1:{port}",
                             *extra, "-c", "copy", "-f", "mpegts", str(dst)], stdin=subprocess.DEVNULL)
    deadline = time.time() + 20
    while not listening(port):
        assert time.time() < deadline and proc.poll() is None, "the receiver did not start"
        time.sleep(0.05)
    return proc


@pytest.fixture(scope="module")
def speech(footage, tmp_path_factory):
    path = tmp_path_factory.mktemp("live") / "speech.wav"
    ffmpeg("-i", str(footage / "driving_speech_en_60s.wav"), "-t", "4", "-ar", "16000", "-ac", "1", str(path))
    return path


@pytest.fixture(scope="module")
def live_avatar(trained):
    return lambda: avatar.from_workspace(make_cfg(trained, "man", *TINY, "render.footage_seconds=0"),
                                         Workspace(trained, "man"))


def test_stream_reaches_a_local_receiver_labelled_with_the_sound_fed(trained, speech, tmp_path):
    port = free_port()
    got = tmp_path / "received.ts"
    rx = receiver(port, got)
    run(trained, "man", "stage=stream", f"audio={speech}", f"stream.out=tcp://127.0.0.1:{port}",
        "stream.realtime=false", *TINY, "render.footage_seconds=0")
    assert rx.wait(timeout=30) == 0
    frames = np.concatenate(list(convert.iter_frames(got, 256, 256)))
    assert abs(len(frames) - 100) <= 2  # 4 s at 25 fps
    assert_labelled(frames)
    fed = convert.decode_audio(speech, 16000)[4000:56000]
    heard = convert.decode_audio(got, 16000)
    # The same speech, in step: MPEG-TS keeps AAC's 1024 priming samples (64 ms) before it.
    r, lag = max((np.corrcoef(fed, heard[4000 + lag : 56000 + lag])[0, 1], lag) for lag in range(0, 1600, 16))
    assert r > 0.9 and lag <= 1100, (r, lag)
    record = json.loads(sorted((trained / "renders" / "man" / "streams").glob("*.json"))[-1].read_text())
    assert record["ai_generated"] and record["frames"] == len(frames) and record["audio_sha256"]


def test_an_interrupted_utterance_goes_back_to_listening_without_a_jump(live_avatar, speech, tmp_path):
    av = live_avatar()
    out = tmp_path / "interrupted.ts"
    sink = FFmpegSink(str(out), av.frames.size, av.fps, 16000, {"clone": "man"}, fmt="mpegts")
    wav = convert.decode_audio(speech, 16000)
    with Session(av, sink) as live:
        for i in range(0, 32000, 3200):  # 2 s of speech in 200 ms chunks
            live.say(wav[i : i + 3200])
            live.pump()
        live.say(wav[32000:])  # the rest is queued...
        live.interrupt()       # ...and cut: a viewer asked something
        live.idle(2.0)
    # Of the 2 s fed, the last 0.1 s waited for the speech after it, which was dropped: 47 frames were spoken,
    # then 2 s of listening, and nothing of the dropped speech.
    frames = np.concatenate(list(convert.iter_frames(out, 256, 256)))
    assert live.frame == 97 and abs(len(frames) - 97) <= 2
    heard = convert.decode_audio(out, 16000)
    assert np.abs(heard[int(2.0 * 16000):]).max() < 0.02  # silence after the interruption
    shown = np.array(live.shown)
    # Back to listening footage within half a second, and no cut beyond the footage's own p99 change.
    assert (~av.pool.talking[shown[60:]]).mean() > (~av.pool.talking[shown[:47]]).mean() + 0.3
    assert measure.jumps(av.pool, shown)["max_cut_jump"] <= 1.0


def test_a_receiver_that_goes_away_is_a_clear_error(live_avatar, speech, tmp_path):
    port = free_port()
    rx = receiver(port, tmp_path / "short.ts", "-t", "0.5")  # records half a second, then hangs up
    av = live_avatar()
    sink = FFmpegSink(f"tcp://127.0.0.1:{port}", av.frames.size, av.fps, 16000, {"clone": "man"}, timeout_s=5)
    wav = np.tile(convert.decode_audio(speech, 16000), 5)  # 20 s: far more than the receiver takes
    with pytest.raises(SinkError, match="went away"):
        with Session(av, sink) as live:
            for i in range(0, len(wav), 3200):
                live.say(wav[i : i + 3200])
                live.pump()
    rx.wait(timeout=10)


class _Discard:
    def write(self, frame, pcm):
        pass

    def close(self):
        pass


@pytest.fixture(scope="module")
def mel_avatar(trained, tmp_path_factory):
    """The test clone hearing log-mel (audio_features.encoder=mel) instead of the default Whisper features."""
    root = tmp_path_factory.mktemp("mel") / "data"
    shutil.copytree(trained, root, symlinks=True)
    mel = "audio_features.encoder=mel"
    run(root, "man", "stage=audio", mel)
    run(root, "man", "stage=train", mel, *TINY)
    return avatar.from_workspace(make_cfg(root, "man", mel, *TINY, "render.footage_seconds=0"), Workspace(root, "man"))


def test_the_runtime_hears_what_render_hears(mel_avatar, speech):
    """Chunk by chunk, a clone hearing log-mel gets for each frame the model input render computes from the whole
    speech. (One hearing Whisper gets its live form: test_whisper, and evaluate.hearing=live judges it.)"""
    from clonetrain.models.inference import speech_windows

    av = mel_avatar
    wav = convert.decode_audio(speech, 16000)
    whole = speech_windows(av.mel, wav, 16000, av.fps, len(wav) // 640)
    live = Session(av, _Discard())
    for i in range(0, len(wav), 3200):
        live.say(wav[i : i + 3200])
    for k0 in (0, 7, 40, 80):
        np.testing.assert_allclose(live._windows(k0, 8), whole[k0 : k0 + 8], atol=1e-4)
    live.close()
