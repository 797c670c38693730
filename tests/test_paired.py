"""Paired comparisons on what the judge measured on real held-out frames (evaluate's frames.npz)."""

import dataclasses
import json
import shutil

import numpy as np

from clonetrain.evaluation import paired
from clonetrain.evaluation.metrics import pearson
from clonetrain.stages.evaluate import read_frame_series
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
