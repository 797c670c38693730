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


def log_clone(cfg: DictConfig, package_dir: Path, clone: str, version: str, metrics: dict, verdict: dict | None,
              train_run_id: str | None, *, copied: tuple[str, ...]) -> str | None:
    """Log a package as a wandb artifact (type "clone", named clone-<clone>, aliased with its version), with its
    metrics and verdict as metadata, from the training run that made it (resumed by its id, so wandb's lineage
    shows which run produced which clone version); from a new run when that id is unknown. The small files named
    in `copied` (the package's metrics, model card and manifest) are copied in, the rest referenced by path: the
    package itself lives in the data root. Returns the run id used, or None (logger other than wandb, or tracking
    failed: never the caller's problem)."""
    if cfg.logger.name != "wandb":
        return None
    os.environ.setdefault("WANDB_SILENT", "true")
    try:
        import wandb

        resume = {"id": train_run_id, "resume": "allow"} if train_run_id else {"name": f"{clone}-package"}
        run = wandb.init(project=cfg.logger.project, mode=str(cfg.logger.mode), dir=str(Path(cfg.paths.root) / "logs"),
                         job_type="train" if train_run_id else "package", reinit="finish_previous", **resume)
        try:
            meta = {"clone": clone, "version": version, "metrics": metrics, "train_run_id": train_run_id,
                    "verdict": {k: verdict[k] for k in ("level", "headline", "targets", "advice")} if verdict else None}
            art = wandb.Artifact(f"clone-{clone}", type="clone", metadata=meta,
                                 description=verdict["headline"] if verdict else f"clone {clone} {version}")
            for name in copied:
                if (package_dir / name).is_file():
                    art.add_file(str(package_dir / name), name=name)
            art.add_reference(Path(package_dir).resolve().as_uri(), name="package", checksum=True)
            run.log_artifact(art, aliases=[version, "latest"])
            return run.id
        finally:
            run.finish()
    except Exception as err:  # noqa: BLE001 - a tracker failure never fails packaging
        import logging

        logging.getLogger(__name__).warning("could not log clone %s %s to wandb: %s", clone, version, err)
        return None
