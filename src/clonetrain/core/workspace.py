"""Every path of a clone, and atomic writes.

Layout under the data root:
    raw/<clone>/            uploaded takes + consent.yaml (never written by the pipeline)
    work/<clone>/<stage>/   one folder per stage, its files + manifest.json
    work/<clone>/<stage>.tmp/  a stage being built; renamed into place when complete
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import shutil
import tempfile
from pathlib import Path
from typing import Any, Iterator

from clonetrain.core.errors import CloneNameError

_CLONE_ID = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$")


def validate_clone_id(clone: object) -> str:
    """Refuse ids that could escape the data root (`../x`, `/abs`, `a/b`) or are empty."""
    if not isinstance(clone, str) or not clone or clone in {".", ".."} or not _CLONE_ID.match(clone) or ".." in clone:
        raise CloneNameError(
            f"clone id {clone!r} is not allowed",
            "use 1-64 letters, digits, '_', '-' or '.', starting with a letter or digit, e.g. clone=anna_01",
        )
    return clone


class Workspace:
    """Paths of one clone under one data root. Knows nothing about what stages compute."""

    def __init__(self, root: str | os.PathLike, clone: str):
        self.root = Path(root).resolve()
        self.clone = validate_clone_id(clone)
        # The fingerprint of each stage being built, set by the pipeline; stages that resume use it.
        self.fingerprints: dict[str, str] = {}
        self.raw_dir = self.root / "raw" / self.clone
        self.work_dir = self.root / "work" / self.clone
        # Belt and braces: even a valid-looking id must resolve inside the root.
        for p in (self.raw_dir, self.work_dir):
            if self.root not in p.resolve().parents:
                raise CloneNameError(f"clone id {clone!r} resolves outside the data root {self.root}")

    def stage_dir(self, stage: str) -> Path:
        return self.work_dir / stage

    def stage_tmp_dir(self, stage: str) -> Path:
        return self.work_dir / f"{stage}.tmp"

    def resume_dir(self, stage: str) -> Path:
        """Where a long stage keeps its checkpoints across a kill. Keyed by the stage's fingerprint, so a run
        with other inputs or settings never resumes from them."""
        fp = self.fingerprints.get(stage, "unknown")
        return self.work_dir / "resume" / f"{stage}-{fp[:16]}"

    def clear_resume(self, stage: str) -> None:
        for d in (self.work_dir / "resume").glob(f"{stage}-*"):
            shutil.rmtree(d, ignore_errors=True)

    def manifest_path(self, stage: str) -> Path:
        return self.stage_dir(stage) / "manifest.json"

    def read_manifest(self, stage: str) -> dict | None:
        path = self.manifest_path(stage)
        if not path.is_file():
            return None
        try:
            return json.loads(path.read_text())
        except (OSError, json.JSONDecodeError):
            return None

    def begin_stage(self, stage: str) -> Path:
        """A fresh, empty build folder for `stage` (a leftover from a killed run is discarded)."""
        self.recover(stage)
        tmp = self.stage_tmp_dir(stage)
        if tmp.exists():
            shutil.rmtree(tmp)
        tmp.mkdir(parents=True)
        return tmp

    def commit_stage(self, stage: str) -> Path:
        """Swap the built folder into place. The old output is kept until the new one is in place."""
        tmp, final = self.stage_tmp_dir(stage), self.stage_dir(stage)
        old = self.work_dir / f"{stage}.old"
        if old.exists():
            shutil.rmtree(old)
        if final.exists():
            os.replace(final, old)
        os.replace(tmp, final)
        if old.exists():
            shutil.rmtree(old)
        _fsync_dir(self.work_dir)
        return final

    def abort_stage(self, stage: str) -> None:
        shutil.rmtree(self.stage_tmp_dir(stage), ignore_errors=True)

    def recover(self, stage: str) -> None:
        """A run killed between the two renames of commit_stage left `<stage>.old` alone: put it back."""
        old, final = self.work_dir / f"{stage}.old", self.stage_dir(stage)
        if old.exists() and not final.exists():
            os.replace(old, final)


def _fsync_dir(path: Path) -> None:
    with contextlib.suppress(OSError):
        fd = os.open(path, os.O_RDONLY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)


@contextlib.contextmanager
def atomic_path(path: str | os.PathLike) -> Iterator[Path]:
    """Yield a temp path beside `path`; on success it is renamed onto `path`, on error removed."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp_name = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp" + path.suffix, dir=path.parent)
    os.close(fd)
    tmp = Path(tmp_name)
    try:
        yield tmp
        os.chmod(tmp, 0o644)  # mkstemp (and some writers) make 0600; outputs are shared like any other file
        with open(tmp, "rb+") as f:
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise


def write_text_atomic(path: str | os.PathLike, text: str) -> None:
    with atomic_path(path) as tmp:
        tmp.write_text(text)


def write_json_atomic(path: str | os.PathLike, obj: Any) -> None:
    write_text_atomic(path, json.dumps(obj, indent=2, sort_keys=False, default=_json_default) + "\n")


def _json_default(o: Any) -> Any:
    # numpy scalars and paths show up in reports; everything else is a bug worth seeing.
    if hasattr(o, "item"):
        return o.item()
    if hasattr(o, "tolist"):
        return o.tolist()
    if isinstance(o, os.PathLike):
        return os.fspath(o)
    raise TypeError(f"not JSON serialisable: {type(o).__name__}")
