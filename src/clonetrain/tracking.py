"""One-off runs in the experiment tracker (wandb, offline unless told otherwise), for what is not a Lightning
fit: an evaluation's metrics and generated clip, a nightly clone's outcome."""

from __future__ import annotations

import contextlib
import os
from pathlib import Path

from omegaconf import DictConfig


def log_run(cfg: DictConfig, name: str, metrics: dict, summary: dict | None = None,
            videos: dict[str, Path] | None = None) -> None:
    """Log numbers (and mp4 files) as one run when logger=wandb; a no-op for other loggers. Tracking is a
    convenience: a failure here is swallowed, never the caller's."""
    if cfg.logger.name != "wandb":
        return
    os.environ.setdefault("WANDB_SILENT", "true")
    with contextlib.suppress(Exception):
        import wandb

        run = wandb.init(project=cfg.logger.project, name=name, mode=str(cfg.logger.mode),
                         dir=str(Path(cfg.paths.root) / "logs"), reinit="finish_previous")
        try:
            data = {k: v for k, v in metrics.items() if isinstance(v, (int, float)) and not isinstance(v, bool)}
            data |= {k: wandb.Video(str(p), format="mp4") for k, p in (videos or {}).items()}
            run.log(data)
            for k, v in (summary or {}).items():
                run.summary[k] = v
        finally:
            run.finish()
