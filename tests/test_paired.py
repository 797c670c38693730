"""Paired comparisons on what the judge measured on real held-out frames (evaluate's frames.npz)."""

import dataclasses
import json
import shutil

import numpy as np
import pytest

from clonetrain.evaluation import paired, versus
from clonetrain.evaluation.metrics import pearson
from clonetrain.contract.series import read_frame_series
from conftest import TINY, run


def _series(trained):
    frames, fps, series = read_frame_series(trained / "work" / "man" / "evaluate" / "frames.npz")
    assert fps == 25
    report = json.loads((trained / "work" / "man" / "evaluate" / "metrics.json").read_text())
    return frames, series, report


def test_frame_series_are_what_the_metrics_summarise(trained):
    frames, series, report = _series(trained)
    assert len(frames) == report["heldout_frames"] and np.all(np.diff(frames) > 0)
    assert {"clone", "static_frame", "real_footage"} <= set(series)
    real = series["real_footage"].mouth_open
    for name in ("clone", "static_frame"):
        s, m = series[name], report["metrics"][name]
        assert len(s.mouth_open) == len(s.lmd) == len(s.psnr) == len(s.ssim) == len(frames)
        assert abs(np.nanmean(s.lmd) - m["lmd_mouth"]) < 1e-4  # metrics.json rounds to 4 decimals
        assert abs(pearson(s.mouth_open, real) - m["mouth_open_corr"]) < 1e-4
        assert abs(s.ssim.mean() - m["ssim_lower"]) < 1e-4
    assert set(report["uncertainty"]["clone_vs_static_frame"]) == {"lmd_mouth", "mouth_open_corr", "psnr_lower",
                                                                   "ssim_lower"}


def test_a_method_against_itself_is_a_tie(trained):
    _, series, _ = _series(trained)
    s, real = series["clone"], series["real_footage"].mouth_open
    for name, v in paired.paired_bootstrap(s, s, real, paired.block_for(25), count=200).items():
        assert v["advantage"] == 0 and v["ci95"] == [0, 0] and v["p_better"] == 0, name
        assert paired.verdict(v) == "tie"


def test_a_real_difference_is_found_and_its_direction_kept(trained):
    _, series, _ = _series(trained)
    s, real = series["static_frame"], series["real_footage"].mouth_open
    worse = dataclasses.replace(s, lmd=s.lmd + 0.01, psnr=s.psnr - 1.0, ssim=s.ssim - 0.05,
                                mouth_open=np.random.default_rng(0).permutation(real))
    better_side = paired.paired_bootstrap(series["real_footage"], worse, real, paired.block_for(25), count=300)
    # Real footage judged against itself: r = 1 against a shuffled mouth.
    assert paired.verdict(better_side["mouth_open_corr"]) == "better"
    for name, v in paired.paired_bootstrap(s, worse, real, paired.block_for(25), count=300).items():
        if name == "mouth_open_corr":
            continue
        assert paired.verdict(v) == "better" and v["p_better"] == 1, name
        assert v["advantage"] > 0 and v["ci95"][0] > 0
    for name, v in paired.paired_bootstrap(worse, s, real, paired.block_for(25), count=300).items():
        if name != "mouth_open_corr":
            assert paired.verdict(v) == "worse" and v["advantage"] < 0, name


def test_block_resamples_are_runs_of_consecutive_frames():
    rows = paired.block_resamples(75, 25, 50, np.random.default_rng(1))
    assert rows.shape == (50, 75) and rows.min() >= 0 and rows.max() < 75
    runs = rows.reshape(50, 3, 25)
    assert np.all(np.diff(runs, axis=-1) == 1)
    assert len({tuple(r) for r in rows}) > 40  # resamples differ


def test_the_report_shows_how_sure_each_win_is(trained, tmp_path):
    root = tmp_path / "data"
    shutil.copytree(trained, root, symlinks=True)
    run(root, "man", "stage=report", *TINY)
    page = (root / "work" / "man" / "report" / "report.html").read_text()
    assert "How sure" in page and "static_frame" in page
    _, _, report = _series(trained)
    lo, hi = report["uncertainty"]["clone_vs_static_frame"]["psnr_lower"]["ci95"]
    assert f"[{lo:+g}, {hi:+g}]" in page


def test_one_clone_against_another_on_the_same_frames(trained, tmp_path):
    mine = trained / "work" / "man" / "evaluate"
    same = versus.clone_vs_clone(mine, mine, count=200)
    assert all(v["verdict"] == "tie" and v["advantage"] == 0 for v in same["advantage_of_a"].values())
    assert not any(v for k, v in same["a_beats_b"].items() if k != "offset_frames")  # no metric beats itself
    # The same clone trained with another seed: each side's advantage is the other's loss.
    other = tmp_path / "data"
    shutil.copytree(trained, other, symlinks=True)
    run(other, "man", "stage=train", "train.seed=7", *TINY)
    run(other, "man", "stage=evaluate", *TINY)
    theirs = other / "work" / "man" / "evaluate"
    ab, ba = versus.clone_vs_clone(mine, theirs, count=200), versus.clone_vs_clone(theirs, mine, count=200)
    assert ab["a"] == ba["b"] and ab["a"] != ab["b"]
    for k, v in ab["advantage_of_a"].items():
        assert v["advantage"] == -ba["advantage_of_a"][k]["advantage"], k
        assert {v["verdict"], ba["advantage_of_a"][k]["verdict"]} in ({"tie"}, {"better", "worse"}), k
    seeds = versus.over_seeds([ab, same])
    assert seeds["a"]["ssim_lower"] == round((ab["a"]["ssim_lower"] + same["a"]["ssim_lower"]) / 2, 4)
    assert sum(seeds["verdicts"]["psnr_lower"].values()) == 2 and seeds["verdicts"]["psnr_lower"]["tie"] >= 1


def test_clones_judged_on_other_frames_are_not_compared(trained, tmp_path):
    other = tmp_path / "data"
    shutil.copytree(trained, other, symlinks=True)
    run(other, "man", "stage=train", "train.holdout=0.2", *TINY)
    run(other, "man", "stage=evaluate", *TINY)
    with pytest.raises(ValueError, match="different held-out frames"):
        versus.clone_vs_clone(trained / "work" / "man" / "evaluate", other / "work" / "man" / "evaluate")
