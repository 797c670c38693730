"""One clone against another, both evaluated on the same held-out frames: which wins each metric, by how much,
and how sure (evaluation.paired). Over several seeds: the mean of each metric and, per metric, in how many seeds
the first was surely better, surely worse or within the noise. The lip-sync benchmark judges fine-tuned vs
from-scratch this way."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np

from clonetrain.contract.files import name_of
from clonetrain.contract import metrics as declared
from clonetrain.contract.metrics import BY_NAME
from clonetrain.contract import series
from clonetrain.contract.series import read_frame_series
from clonetrain.evaluation import paired
from clonetrain.evaluation.metrics import beats

VERDICTS = ("better", "tie", "worse")


def clone_vs_clone(evaluate_a: Path, evaluate_b: Path, count: int = 2000) -> dict:
    """Two evaluate/ folders -> {"a", "b": the clones' metrics, "a_beats_b": per metric,
    "advantage_of_a": per metric {advantage, ci95, p_better, verdict}}."""
    frames_a, fps, series_a = read_frame_series(Path(evaluate_a) / name_of("evaluate", "frames"))
    frames_b, _, series_b = read_frame_series(Path(evaluate_b) / name_of("evaluate", "frames"))
    if not np.array_equal(frames_a, frames_b):
        raise ValueError(f"{evaluate_a} and {evaluate_b} were judged on different held-out frames: "
                         "a paired comparison needs the same footage and train.holdout")
    a, b = (json.loads((Path(d) / name_of("evaluate", "metrics")).read_text())["metrics"]["clone"]
            for d in (evaluate_a, evaluate_b))
    boot = paired.paired_bootstrap(series_a["clone"], series_b["clone"], series_a["real_footage"].mouth_open,
                                   paired.block_for(fps), count=count)
    xa, xb = (Path(d) / name_of("evaluate", "cross_speaker") for d in (evaluate_a, evaluate_b))
    if xa.is_file() and xb.is_file():  # the same drivers' frames: how a clone is used, judged the same way
        xspk = paired.cross_speaker_bootstrap(series.read_driver_series(xa), series.read_driver_series(xb),
                                              paired.block_for(fps), count=count)
        if xspk["drivers"]:
            boot["cross_speaker_mouth_r"] = xspk
    return {"a": a, "b": b, "a_beats_b": beats(a, b),
            "advantage_of_a": {k: {**v, "verdict": paired.verdict(v)} for k, v in boot.items()}}


def mean_metrics(runs: list[dict], keys=None) -> dict:
    """Mean of each metric over seeds (the seeds that have it); a metric best near a value (the offset: 0) as the
    mean distance from it, so opposite errors do not cancel."""
    out, keys = {}, declared.MEANS if keys is None else keys  # the declaration's, read when called
    for k in keys:
        v = [r[k] for r in runs if r.get(k) is not None]
        if k in BY_NAME and BY_NAME[k].higher_is_better is None:
            v = [abs(x - BY_NAME[k].best) for x in v]
        out[k] = round(float(np.mean(v)), 4) if v else None
    return out


def over_seeds(comparisons: list[dict]) -> dict:
    """clone_vs_clone results of several seeds -> the means of each side, which mean wins, and per metric the
    count of seeds with each bootstrap verdict."""
    mean_a = mean_metrics([c["a"] for c in comparisons])
    mean_b = mean_metrics([c["b"] for c in comparisons])
    verdicts = {k: {v: sum(c["advantage_of_a"][k]["verdict"] == v for c in comparisons) for v in VERDICTS}
                for k in comparisons[0]["advantage_of_a"]}
    return {"a": mean_a, "b": mean_b, "a_beats_b": beats(mean_a, mean_b), "verdicts": verdicts}
