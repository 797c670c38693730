"""Nightly over three clones: killed on the second and resumed; one broken, one unchanged (skipped), one changed
(retrained, gated); a withdrawn consent; the lock."""

import json
import time

import pytest

from clonetrain.product import consent, nightly, registry
from clonetrain.core.errors import LockedError
from conftest import TINY, make_clone

# Clones trained for 4 steps miss every evaluation target: the floor is lowered to test the rest of the logic.
NO_FLOOR = [*TINY, "nightly.floor=[]"]


@pytest.fixture(scope="module")
def farm(clips, footage, module_scratch):
    root = module_scratch / "data"
    make_clone(root, "a_same", {"take1.mp4": clips["man12"]})
    make_clone(root, "b_changes", {"take1.mp4": clips["man12"]})
    make_clone(root, "c_broken", {"take1.mp4": footage / "bad_truncated.mp4"})
    real = nightly.process_clone

    def killed_on_b(root_, clone, overrides):
        if clone == "b_changes":
            raise KeyboardInterrupt  # the machine went down mid-run
        return real(root_, clone, overrides)

    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(nightly, "process_clone", killed_on_b)
        with pytest.raises(KeyboardInterrupt):
            nightly.run_nightly(root, TINY)
    killed = json.loads((root / "nightly" / "latest.json").read_text())  # the killed run left its summary
    below_floor = nightly.run_nightly(root, TINY)  # resumed; the default floor: the release targets
    first = nightly.run_nightly(root, NO_FLOOR)  # nothing retrained: only the decision differs
    return root, first, below_floor, killed


def test_a_killed_nightly_resumes_without_redoing_what_it_finished(farm):
    _, _, resumed, killed = farm
    assert killed["state"] == "interrupted" and [r["clone"] for r in killed["clones"]] == ["a_same"]
    rows = _by_clone(resumed)
    assert set(rows["a_same"]["stages"].values()) == {"skipped"}  # finished before the kill, not redone
    assert rows["b_changes"]["stages"]["train"] == "ran" and rows["b_changes"]["status"] == "kept"


def test_a_first_version_below_the_floor_stays_a_candidate_and_says_why(farm):
    root, _, below, _ = farm
    a = _by_clone(below)["a_same"]
    assert a["status"] == "kept" and "below the promotion floor" in a["reason"] and "target" in a["reason"]
    assert below["state"] == "finished" and below["counts"]["promoted"] == 0
    history = registry.read(root)["clones"]["a_same"]["history"]
    assert any(h["event"] == "candidate" and "floor" in h["reason"] for h in history)


def _by_clone(summary):
    return {r["clone"]: r for r in summary["clones"]}


def test_first_night_promotes_good_clones_and_reports_the_broken_one(farm):
    root, first, _, _ = farm
    rows = _by_clone(first)
    assert rows["a_same"]["status"] == "promoted" and rows["b_changes"]["status"] == "promoted"
    assert rows["c_broken"]["status"] == "failed" and "cut short" in rows["c_broken"]["reason"]
    assert registry.live(root, "a_same")[0] == "v0001"
    latest = json.loads((root / "nightly" / "latest.json").read_text())
    assert latest["counts"] == {"promoted": 2, "kept": 0, "unchanged": 0, "failed": 1}
    assert list((root / "nightly").glob("*/summary.html"))


def test_second_night_skips_the_unchanged_and_gates_the_changed(farm, clips):
    root, _, _, _ = farm
    make_clone(root, "b_changes", {"take2.mp4": clips["man12_late"]}, consent=False)
    t0 = time.perf_counter()
    second = _by_clone(nightly.run_nightly(root, NO_FLOOR, only=["a_same", "b_changes", "c_broken"]))
    a = second["a_same"]
    assert a["status"] == "unchanged" and set(a["stages"].values()) == {"skipped"}
    assert a["seconds"] < 10  # nothing rerun (a generous bound: the point is that no stage ran)
    b = second["b_changes"]
    assert b["stages"]["ingest"] == "ran" and b["version"] == "v0002"
    live = registry.read(root)["clones"]["b_changes"]
    ok, _ = nightly.gate(live["versions"]["v0002"]["metrics"], live["versions"]["v0001"]["metrics"], 0.02)
    assert b["status"] == ("promoted" if ok else "kept")
    assert live["live"] == ("v0002" if ok else "v0001")
    assert second["c_broken"]["status"] == "failed"
    assert time.perf_counter() - t0 < 300


def test_gate_keeps_a_worse_version():
    live = {"lmd_mouth": 0.05, "mouth_open_corr": 0.5, "psnr_lower": 25.0, "ssim_lower": 0.8, "offset_frames": 0.2}
    assert nightly.gate(dict(live), live, 0.02) == (True, [])
    ok, why = nightly.gate({**live, "mouth_open_corr": 0.4}, live, 0.02)
    assert not ok and "mouth_open_corr" in why[0]
    assert nightly.gate({**live, "lmd_mouth": 0.0505}, live, 0.02)[0]  # within tolerance


def test_the_voice_is_gated_only_against_a_voice_measured_the_same_way():
    """voice_similarity is measured on one TTS engine's speech (or, without one, on the held-out speech): a
    version measured another way is not comparable, so not worse; measured the same way, worse is kept out."""
    live = {"lmd_mouth": 0.05, "voice_similarity": 0.90, "voice_similarity_of": "tts kokoro:jm_kumo"}
    worse = {**live, "voice_similarity": 0.80}
    assert not nightly.gate(worse, live, 0.02)[0]
    assert nightly.gate({**worse, "voice_similarity_of": "tts piper:en_US-joe-medium"}, live, 0.02) == (True, [])
    assert nightly.gate({**worse, "voice_similarity_of": "heldout_reconstructed"}, live, 0.02)[0]


def test_nan_fails_the_gate_and_the_floor():
    live = {"lmd_mouth": 0.05, "mouth_open_corr": 0.5, "psnr_lower": 25.0, "ssim_lower": 0.8, "offset_frames": 0.2}
    ok, why = nightly.gate({**live, "mouth_open_corr": float("nan")}, live, 0.02)
    assert not ok and why == ["mouth_open_corr is nan"]
    assert not nightly.gate({**live, "offset_frames": float("nan")}, live, 0.02)[0]
    entry = {"metrics": {**live, "mouth_open_corr": float("nan")}, "targets": {"t": True}}
    assert nightly.floor(entry, ["*"]) == ["mouth_open_corr is nan"]


def test_the_floor_defaults_to_every_evaluation_target_and_is_configurable():
    entry = {"metrics": {}, "targets": {"mouth_open_corr>=0.5": False, "offset_within_1_frame": True},
             "lipsync_ready": True, "status": "candidate"}
    assert nightly.floor(entry, ["*"]) == ["target mouth_open_corr>=0.5 missed"]
    assert nightly.floor(entry, ["offset_within_1_frame"]) == []
    assert nightly.floor(entry, []) == []
    not_ready = {**entry, "targets": {}, "lipsync_ready": False}
    assert "not ready for lip-sync" in nightly.floor(not_ready, ["*"])[0]

    class Cfg:
        floor, tolerance = ["*"], 0.02

    status, reason, action = nightly.decide("v0001", entry, None, Cfg)
    assert (status, action) == ("kept", None) and "stays a candidate" in reason


def test_nightly_clones_is_honoured(tmp_path, clips):
    root = tmp_path / "data"
    make_clone(root, "alpha", {"take1.mp4": clips["man12"]}, consent=False)
    summary = nightly.run_nightly(root, [*TINY, "nightly.clones=[beta]"])
    assert [r["clone"] for r in summary["clones"]] == ["beta"]  # alpha is not touched
    assert "has no folder" in summary["clones"][0]["reason"]
    assert not (root / "work" / "alpha").exists()


def test_a_second_nightly_exits_at_once(tmp_path):
    with nightly.nightly_lock(tmp_path):
        with pytest.raises(LockedError, match="another nightly run is in progress"):
            nightly.run_nightly(tmp_path, TINY)


def test_a_withdrawn_consent_takes_the_live_version_down_and_retrains_nothing(farm):
    root = farm[0]
    assert registry.live(root, "a_same")[0] == "v0001"
    consent.revoke(root, "a_same")
    row = _by_clone(nightly.run_nightly(root, NO_FLOOR, only=["a_same"]))["a_same"]
    assert row["status"] == "failed" and "revoked" in row["reason"] and "v0001 taken down" in row["reason"]
    assert registry.live(root, "a_same") is None
