"""Every metric, declared once: its name, which way is better, how a person reads it, what it summarises and
who compares it.

Training's monitor (early stopping and the kept weights), the evaluation's comparisons (evaluation.metrics.beats),
the bootstrap (evaluation.paired), the report, the package's card and the nightly gate read it here, so "better"
cannot mean one thing in one place and the opposite in another. Adding a held-out metric: compute it in
evaluation.metrics.summarise (or a sibling), declare it in HELDOUT.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from clonetrain.core.errors import ClonetrainError


@dataclass(frozen=True)
class Goal:
    """A target on the clone's value of a metric. Met when the value is on the metric's better side of `bound`
    (within +-bound for a metric whose best is 0)."""
    bound: float
    key: str = ""                 # its name in metrics.json's `targets`; "" names it from the metric and the bound
    over_static: bool = False     # the value is the clone's over the static frame's
    acceptance: str = ""          # issue 13's acceptance targets: the name in `target_values` and the benchmarks
    words: str = ""               # the goal as a person reads it (acceptance targets)
    release: bool = False         # a release target: by default the nightly floor a version must meet to go live


@dataclass(frozen=True)
class Metric:
    name: str                     # its key in metrics.json's per-method metrics
    higher_is_better: bool | None  # None: nearest `best` is best (an offset: 0)
    label: str                    # how a table heads it
    series: str | None = None     # the per-frame measure it summarises (contract.series.FrameSeries field): the
                                  # bootstrap resamples it; None: not a per-frame summary
    pooled: str = "mean"          # over the frames: "mean" of the series, or "corr" with the real mouth opening
    gated: bool = False           # the nightly gate compares it with the live version
    where_possible: bool = False  # measured only where the machine can (the drivers' footage): absent is not worse
    goals: tuple[Goal, ...] = ()  # the targets on it: the evaluation's verdict, the nightly floor, the benchmarks
    table: bool = False           # a column of the report's held-out table
    card: bool = False            # a column of the package's model card
    texture: bool = False         # shown with and without the mouth texture (metrics.json "mouth_texture")
    listed: str = ""              # its short heading in `registry list` ("": not a column there)
    best: float = 0.0             # with higher_is_better None: the value that is best
    # The entry key naming how it was measured (the voice's similarity: on which TTS engine's speech, or on the
    # held-out speech without one): the gate compares it only with a live value measured the same way.
    measured_by: str | None = None

    def met(self, goal: Goal, value: float) -> bool:
        if self.higher_is_better is None:
            return abs(value - self.best) <= goal.bound
        return value >= goal.bound if self.higher_is_better else value <= goal.bound

    def holds_against(self, value: float | None, other: float | None) -> bool:
        """For a metric best at a value (`best`; the offset: 0): is `value` within its first goal's bound of it, or
        no further from it than `other` (None: not measured, so nothing to hold against)? What "at least as good"
        means for it."""
        if value is None:
            return False
        gap = abs(value - self.best)
        return (bool(self.goals) and gap <= self.goals[0].bound) or other is None or gap <= abs(other - self.best)

    def key(self, goal: Goal) -> str:
        if goal.key:
            return goal.key
        op = ">=" if self.higher_is_better else "<="
        return f"{self.name}{op}{goal.bound:g}" + ("*static" if goal.over_static else "")


# Held-out evaluation (stage=evaluate), in the order they are compared and shown.
HELDOUT: tuple[Metric, ...] = (
    Metric("lmd_mouth", False, "mouth LMD (lower is better)", series="lmd", gated=True, table=True, card=True,
           texture=True, listed="LMD",
           goals=(Goal(0.7, over_static=True, release=True),
                  Goal(0.5, "heldout_lmd_vs_static<=0.5", over_static=True, acceptance="heldout_lmd_vs_static",
                       words="<= 0.5 (the clone's held-out mouth LMD over the static frame's)"))),
    Metric("mouth_open_corr", True, "mouth-opening r", series="mouth_open", pooled="corr", gated=True, table=True,
           card=True, texture=True, listed="mouth r",
           goals=(Goal(0.5, release=True),
                  Goal(0.75, "heldout_mouth_r>=0.75", acceptance="heldout_mouth_r", words=">= 0.75"))),
    Metric("offset_frames", None, "offset (frames)", gated=True, table=True, card=True,
           goals=(Goal(1, "offset_within_1_frame", acceptance="offset_frames",
                       words="within +-1 frame (held-out generated frames)", release=True),)),
    Metric("sync_peak_margin", True, "offset peak margin", table=True),
    Metric("sync_peak_corr", True, "offset peak correlation"),
    Metric("psnr_lower", True, "PSNR lower face", series="psnr", gated=True, table=True, card=True),
    Metric("ssim_lower", True, "SSIM lower face", series="ssim", gated=True, table=True, card=True),
    Metric("cross_speaker_mouth_r", True, "cross-speaker mouth r", gated=True, where_possible=True,
           goals=(Goal(0.5, acceptance="cross_speaker_mouth_r", words=">= 0.5 (mean over the drivers)"),)),
    Metric("silence_closed_fraction", True, "shut in driver pauses", gated=True, where_possible=True,
           goals=(Goal(0.9, acceptance="silence_closed_fraction",
                       words=">= 0.9 (driver pauses, pooled over drivers)"),)),
    Metric("mouth_sharpness_ratio", True, "mouth sharpness over real", gated=True, texture=True,
           goals=(Goal(0.85, acceptance="mouth_sharpness_ratio",
                       words=">= 0.85 (held-out mouth box, generated over real)"),)),
    Metric("psnr_mouth", True, "PSNR mouth box", texture=True),
    Metric("ssim_mouth", True, "SSIM mouth box", texture=True),
    # Frame-to-frame change of the mouth box over the real mouth's: above 1 it jumps, near 0 it is still.
    Metric("mouth_flicker_ratio", None, "mouth flicker over real", texture=True, best=1.0),
)
# The voice's held-out measures (stage=voice; the package copies them into the registry's metrics). Continuous
# ones only: WER over a few sentences moves in steps of a whole word and would block promotion on noise. A clone
# without a voice has none: measured where possible.
VOICE: tuple[Metric, ...] = (
    Metric("voice_similarity", True, "voice similarity", gated=True, where_possible=True,
           measured_by="voice_similarity_of"),
    Metric("voice_mcd_db", False, "voice MCD (dB)", gated=True, where_possible=True),
)
BY_NAME = {m.name: m for m in (*HELDOUT, *VOICE)}


@dataclass(frozen=True)
class DriverMeasure:
    """A measure of the cross-speaker evaluation, per driver and as the mean over drivers
    (evaluation.cross_speaker): the report's driver table shows it, and its mean becomes the held-out metric
    `heldout` of metrics.json."""
    name: str                     # its key in cross_speaker's per-driver and mean rows
    label: str                    # the clone's column in the report's driver table
    heldout: str                  # the held-out metric its mean over drivers becomes
    static_label: str = ""        # the static frame's column beside it ("": not shown)


DRIVER: tuple[DriverMeasure, ...] = (
    DriverMeasure("mouth_r", "mouth r", "cross_speaker_mouth_r", static_label="static r"),
    DriverMeasure("lmd", "LMD", "cross_speaker_lmd", static_label="static LMD"),
    DriverMeasure("silence_closed_fraction", "shut in pauses", "silence_closed_fraction"),
)
# What the paired bootstrap compares (per-frame summaries) and what nightly gates.
PER_FRAME = {m.name: m.higher_is_better for m in HELDOUT if m.series}
GATED = tuple(m for m in (*HELDOUT, *VOICE) if m.gated)
WHERE_POSSIBLE = tuple(m.name for m in (*HELDOUT, *VOICE) if m.where_possible)
# What the benchmarks average over seeds: every held-out metric that is gated or has a goal.
MEANS = tuple(m.name for m in HELDOUT if m.gated or m.goals)
# The report's held-out table and the package card's, in declaration order.
TABLE = tuple(m for m in HELDOUT if m.table)
CARD = tuple(m for m in HELDOUT if m.card)
# The columns of `registry list`, in declaration order.
LISTED = tuple(m for m in (*HELDOUT, *VOICE) if m.listed)
# The numbers evaluate shows with and without the mouth texture.
TEXTURE = tuple(m.name for m in HELDOUT if m.texture)
# A target on no single metric: the clone beats every baseline on every per-method metric (evaluation.metrics.beats).
BEATS_EVERY_BASELINE = "beats_every_baseline"


def release_targets() -> list[str]:
    """The release targets' names in metrics.json "targets": what `nightly.floor=[release]` (the default) asks
    of a version before it goes live."""
    return [m.key(g) for m in HELDOUT for g in m.goals if g.release] + [BEATS_EVERY_BASELINE]



def goal_values(results: dict) -> tuple[dict[str, bool], dict[str, dict]]:
    """Every goal, judged on the evaluation's per-method metrics (results["clone"], results["static_frame"]):
    ({targets key: met}, {acceptance name: {"value", "goal", "met"}}). A value that was not measured (None, NaN)
    is not met; a where-possible metric that was not measured is left out of the first (not a miss)."""
    clone, static = results["clone"], results.get("static_frame", {})
    met, acceptance = {}, {}
    for metric in HELDOUT:
        for goal in metric.goals:
            value = _finite(clone.get(metric.name))
            if goal.over_static:
                base = _finite(static.get(metric.name))
                value = value / base if value is not None and base else None
            ok = bool(value is not None and metric.met(goal, value))
            if value is not None or not metric.where_possible:
                met[metric.key(goal)] = ok
            if goal.acceptance:
                shown = round(value, 4) if goal.over_static and value is not None else value
                acceptance[goal.acceptance] = {"value": shown, "goal": goal.words, "met": ok}
    return met, acceptance


def _finite(v) -> float | None:
    return None if v is None or not math.isfinite(v) else v


# What validation logs (training.module): losses fall, the expert's accuracy rises.
TRAINING: dict[str, bool] = {"val/l1": False, "val/l1_lower": False, "val/sync": False, "val/expert": False,
                             "val/expert_acc": True}


def higher_is_better(name: str) -> bool:
    """Does a higher value of the training metric `name` mean better? Unknown names are an error: guessing the
    direction would keep the worst weights."""
    if name not in TRAINING:
        raise ClonetrainError(f"train.monitor={name!r} is not a metric validation logs",
                              f"choose one of: {', '.join(TRAINING)}")
    return TRAINING[name]


def mode(name: str) -> str:
    """Lightning's `mode` for a monitored metric: 'max' when higher is better, else 'min'."""
    return "max" if higher_is_better(name) else "min"
