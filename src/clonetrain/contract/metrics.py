"""Which way each metric runs: the one place that says whether lower or higher is better.

Training's monitor (early stopping and the kept weights), the evaluation's comparisons, the bootstrap and the
nightly gate read it here, so "better" cannot mean one thing in one place and the opposite in another.
"""

from __future__ import annotations

from clonetrain.errors import ClonetrainError

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
