"""Nightly over three clones: one broken, one unchanged (skipped), one changed (retrained, gated); the lock;
resume after a kill."""

import json
import time

import pytest

from clonetrain import nightly, registry
from clonetrain.errors import LockedError
from conftest import TINY, make_clone


@pytest.fixture(scope="module")
def farm(clips, footage, tmp_path_factory):
    root = tmp_path_factory.mktemp("farm") / "data"
    make_clone(root, "a_same", {"take1.mp4": clips["man20"]})
    make_clone(root, "b_changes", {"take1.mp4": clips["man20"]})
    make_clone(root, "c_broken", {"take1.mp4": footage / "bad_truncated.mp4"})
    first = nightly.run_nightly(root, TINY)
    return root, first


def _by_clone(summary):
    return {r["clone"]: r for r in summary["clones"]}


def test_first_night_promotes_good_clones_and_reports_the_broken_one(farm):
    root, first = farm
    rows = _by_clone(first)
    assert rows["a_same"]["status"] == "promoted" and rows["b_changes"]["status"] == "promoted"
    assert rows["c_broken"]["status"] == "failed" and "cut short" in rows["c_broken"]["reason"]
    assert registry.live(root, "a_same")[0] == "v0001"
    latest = json.loads((root / "nightly" / "latest.json").read_text())
    assert latest["counts"] == {"promoted": 2, "kept": 0, "unchanged": 0, "failed": 1}
    assert list((root / "nightly").glob("*/summary.html"))


def test_second_night_skips_the_unchanged_and_gates_the_changed(farm, clips):
    root, _ = farm
    make_clone(root, "b_changes", {"take2.mp4": clips["man20_late"]}, consent=False)
    t0 = time.perf_counter()
    second = _by_clone(nightly.run_nightly(root, TINY, only=["a_same", "b_changes", "c_broken"]))
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


def test_a_second_nightly_exits_at_once(tmp_path):
    with nightly.nightly_lock(tmp_path):
        with pytest.raises(LockedError, match="another nightly run is in progress"):
            nightly.run_nightly(tmp_path, TINY)


def test_a_killed_nightly_resumes(clips, tmp_path, monkeypatch):
    root = tmp_path / "data"
    make_clone(root, "k1", {"take1.mp4": clips["man20"]})
    make_clone(root, "k2", {"take1.mp4": clips["man20"]})
    real = nightly.process_clone

    def killed_on_k2(root_, clone, overrides):
        if clone == "k2":
            raise KeyboardInterrupt  # the machine went down mid-run
        return real(root_, clone, overrides)

    monkeypatch.setattr(nightly, "process_clone", killed_on_k2)
    with pytest.raises(KeyboardInterrupt):
        nightly.run_nightly(root, TINY)
    monkeypatch.undo()
    rows = _by_clone(nightly.run_nightly(root, TINY))
    assert rows["k1"]["status"] == "unchanged"  # finished before the kill, not redone
    assert rows["k2"]["status"] == "promoted"
