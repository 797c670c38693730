"""Every metric, declared once: its name, which way is better, how a person reads it, what it summarises and
who compares it.

Training's monitor (early stopping and the kept weights), the evaluation's comparisons (evaluation.metrics.beats),
the bootstrap (evaluation.paired), the report, the package's card and the nightly gate read it here, so "better"
cannot mean one thing in one place and the opposite in another. Adding a held-out metric: compute it in
evaluation.metrics.summarise (or a sibling), declare it in HELDOUT.
"""

from __future__ import annotations

from dataclasses import dataclass

from clonetrain.errors import ClonetrainError


@dataclass(frozen=True)
class Metric:
    name: str                     # its key in metrics.json's per-method metrics
    higher_is_better: bool | None  # None: nearest 0 is best (an offset)
    label: str                    # how a table heads it
    series: str | None = None     # the per-frame measure it summarises (contract.series.FrameSeries field): the
                                  # bootstrap resamples it; None: not a per-frame summary
    pooled: str = "mean"          # over the frames: "mean" of the series, or "corr" with the real mouth opening
    gated: bool = False           # the nightly gate compares it with the live version
    where_possible: bool = False  # measured only where the machine can (the drivers' footage): absent is not worse


# Held-out evaluation (stage=evaluate), in the order they are compared and shown.
HELDOUT: tuple[Metric, ...] = (
    Metric("mouth_open_corr", True, "mouth-opening r", series="mouth_open", pooled="corr", gated=True),
    Metric("psnr_lower", True, "PSNR lower face", series="psnr", gated=True),
    Metric("ssim_lower", True, "SSIM lower face", series="ssim", gated=True),
    Metric("lmd_mouth", False, "mouth LMD (lower is better)", series="lmd", gated=True),
    Metric("cross_speaker_mouth_r", True, "cross-speaker mouth r", gated=True, where_possible=True),
    Metric("silence_closed_fraction", True, "shut in driver pauses", gated=True, where_possible=True),
    Metric("mouth_sharpness_ratio", True, "mouth sharpness over real", gated=True),
    Metric("offset_frames", None, "offset (frames)"),
    Metric("sync_peak_margin", True, "offset peak margin"),
)
BY_NAME = {m.name: m for m in HELDOUT}
# What the paired bootstrap compares (per-frame summaries) and what nightly gates, with their directions.
PER_FRAME = {m.name: m.higher_is_better for m in HELDOUT if m.series}
GATED = {m.name: m.higher_is_better for m in HELDOUT if m.gated}
WHERE_POSSIBLE = tuple(m.name for m in HELDOUT if m.where_possible)
# The held-out table of the report, in its column order, and the package card's (without the peak margin).
TABLE = tuple(BY_NAME[n] for n in ("lmd_mouth", "mouth_open_corr", "offset_frames", "sync_peak_margin", "psnr_lower",
                                   "ssim_lower"))
CARD = tuple(m for m in TABLE if m.name != "sync_peak_margin")

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
