"""The motion library and the path render takes through the clone's footage: talking footage under speech,
listening footage in pauses, forward only, cuts only where head pose and face match."""

import json

import numpy as np
import pytest

from clonetrain.product import avatar
from clonetrain.media import convert
from clonetrain.media.frames import FrameStore, Video
from clonetrain.motion import library, measure, plan as mp
from conftest import TINY, ffmpeg, make_cfg, run


@pytest.fixture(scope="module")
def pool(preprocessed):
    frames = np.load(preprocessed.stage_dir("ingest") / "frames.npz")
    ids = avatar.footage_frames(np.ones(len(frames["take"]), bool), frames["take"], {0: (256, 256)},
                                len(frames["take"]))
    return avatar.footage_pool(preprocessed, ids, 25)


def test_library_labels_the_real_footage_by_speech_and_head_motion(pool):
    # 20 s of a man talking with short pauses: mostly talking, some listening, head labels from the pose.
    assert 0.6 < pool.talking.mean() < 0.98
    segments = library.segments(pool)
    assert segments[0]["start"] == 0 and segments[-1]["end"] == len(pool)
    assert all(a["end"] == b["start"] for a, b in zip(segments, segments[1:]))
    assert {s["speech"] for s in segments} == {"talking", "idle"}
    assert {s["head"] for s in segments} <= {"nodding", "moving", "still"}
    first = segments[0]
    assert first["entry"]["pose"] == pytest.approx(pool.pose[0].tolist(), abs=0.01)
    # The face box is in face sizes: about 1.0 for the footage's median face.
    assert pool.box[:, 2].mean() == pytest.approx(1.0, abs=0.1)


def path_through(pool, speech, cfg=None):
    cfg = cfg or mp.PlanCfg()
    return mp.plan(pool, mp.wanted_labels(speech, 25, cfg), cfg)


def test_pauses_play_listening_footage_and_every_cut_matches(pool):
    # Pauses as long as the ones in real speech (0.5-0.6 s). This 17 s of footage has only three stretches of
    # listening: the benchmark measures the shares on a whole minute (bench/results/runtime.json).
    speech = np.r_[np.ones(75, bool), np.zeros(12, bool), np.ones(75, bool), np.zeros(15, bool), np.ones(60, bool)]
    path = path_through(pool, speech)
    shares = measure.label_shares(pool, path.frames, speech, 25)
    blind = measure.label_shares(pool, path_through(pool, np.ones_like(speech)).frames, speech, 25)
    assert shares["speech_on_talking"] >= 0.9, shares
    # Far more listening footage in the pauses than the footage holds (7%) or than a path blind to them plays.
    assert shares["pause_on_idle"] >= 0.35 and shares["pause_on_idle"] >= blind["pause_on_idle"] + 0.3, (shares, blind)
    jumps = measure.jumps(pool, path.frames)
    assert jumps["max_cut_jump"] <= 1.0, jumps
    # Every step is the footage's own next frame (either way) or a recorded cut; the path turns round only on
    # still frames, in the pauses.
    steps = np.diff(path.frames)
    cut_at = {c["at"] for c in path.cuts}
    assert all(abs(d) == 1 or k + 1 in cut_at for k, d in enumerate(steps))
    planner = mp.Planner(pool, mp.PlanCfg())
    for k in path.turns:
        assert planner.still[path.frames[k - 1]] and not speech[k]


def test_a_long_pause_turns_round_on_still_listening_frames(pool):
    """A pause longer than any listening stretch: the path turns round inside one, on still frames only, instead
    of playing talking footage (the case the old back-and-forth loop got wrong for every frame)."""
    planner = mp.Planner(pool, mp.PlanCfg())
    stretches = [s for s in library.segments(pool) if s["speech"] == "idle"]
    best = max(stretches, key=lambda s: planner.still[s["start"]:s["end"]].sum())  # most frames to turn on
    start = best["start"] + int(np.argmax(planner.still[best["start"]:best["end"]]))
    path = mp.plan(pool, np.zeros(60, bool), mp.PlanCfg(), start=start)
    assert path.turns and all(planner.still[path.frames[k - 1]] for k in path.turns)
    assert (~pool.talking[path.frames]).mean() >= 0.8


def test_footage_that_runs_out_cuts_with_a_blend(pool):
    """Two runs of footage whose heads are 30 degrees apart: no cut matches, so each run is played to its end,
    and the forced cut there is cross-faded."""
    pose = pool.pose[:40].copy()
    pose[20:] += 30.0
    small = library.Pool(pose=pose, box=pool.box[:40], talking=np.ones(40, bool), nodding=pool.nodding[:40],
                         run=np.r_[np.zeros(20, int), np.ones(20, int)], fps=25)
    path = mp.plan(small, np.ones(120, bool), mp.PlanCfg(), start=0)
    assert len(path.frames) == 120 and list(path.frames[:20]) == list(range(20))
    forced = [c for c in path.cuts if c["forced"]]
    assert forced and all(c["from"] in (19, 39) for c in forced)
    faded = np.flatnonzero(path.blend_weight > 0)
    assert faded.size and np.all(path.blend_from[faded] >= 0) and np.all(path.blend_weight[faded] < 1)
    assert faded[0] == forced[0]["at"]


def test_frames_by_index_match_the_decoded_video(preprocessed):
    take = json.loads((preprocessed.stage_dir("ingest") / "takes.json").read_text())[0]
    video = preprocessed.stage_dir("ingest") / take["video"]
    whole = np.concatenate(list(convert.iter_frames(video, take["width"], take["height"])))[:300]
    with FrameStore([Video(video, take["width"], take["height"], 25)], np.zeros(300, int), np.arange(300)) as store:
        for i in (5, 6, 7, 250, 3, 4, 120, 299, 0):  # forward, a jump ahead, back, and again
            assert np.array_equal(store.frame(i), whole[i]), i
        assert store.preload(300 * 256 * 256 * 3) and store.frame(123) is not None
        assert all(np.array_equal(store.frame(i), whole[i]) for i in (0, 1, 150, 299))
    small = FrameStore([Video(video, take["width"], take["height"], 25)], np.zeros(300, int), np.arange(300))
    assert not small.preload(10 * 256 * 256 * 3)  # too big to hold: read as it plays


def test_render_plays_listening_footage_in_a_pause(trained, footage, tmp_path):
    speech = tmp_path / "pause.wav"
    ffmpeg("-i", str(footage / "driving_speech_en_60s.wav"), "-f", "lavfi", "-t", "2.5", "-i",
           "anullsrc=r=16000:cl=mono", "-filter_complex",
           "[0:a]atrim=0:3,asetpts=N/SR/TB,aresample=16000,pan=mono|c0=c0[a];[1:a]asetpts=N/SR/TB[s];"
           "[0:a]atrim=3:6,asetpts=N/SR/TB,aresample=16000,pan=mono|c0=c0[b];[a][s][b]concat=n=3:v=0:a=1",
           str(speech))
    out = tmp_path / "pause.mp4"
    # All of the clone's training footage to choose from (TINY packs 4 s).
    run(trained, "man", "stage=render", f"audio={speech}", f"render.out={out}", *TINY, "render.footage_seconds=0")
    record = json.loads(out.with_suffix(".provenance.json").read_text())
    shown = np.array(record["footage_frames"])
    assert len(shown) == record["frames"] == 213
    from clonetrain.core.workspace import Workspace
    ws = Workspace(trained, "man")
    # The pool the render played from: the avatar's own (usable training frames).
    pool = avatar.from_workspace(make_cfg(trained, "man", *TINY, "render.footage_seconds=0"), ws).pool
    in_pause, in_speech = shown[80:135], np.r_[shown[:70], shown[150:]]  # 3.2-5.4 s: inside the silence
    assert (~pool.talking[in_pause]).mean() >= (~pool.talking[in_speech]).mean() + 0.3
    assert measure.jumps(pool, shown)["max_cut_jump"] <= 1.0
