"""Leftovers of a killed or refused run under data/clones/<clone>/, reconciled at the start of the next run.

- a complete `vNNNN/` the registry does not know (killed between publishing and registering): adopted as a
  candidate when it verifies and is this clone's version, its archive rebuilt if missing; removed otherwise
- `.vNNNN.tmp/` (a folder being published) and `.<clone>-vNNNN.tar.gz.tmp` (an archive being written): removed
- `.<name>.extracting-*/` (an archive being extracted) older than STALE_S: removed (a younger one may be in use)
- a registered version whose archive is missing: the archive is rebuilt from the verified folder
- `renders/<clone>/.<stem>.<pid>.rendering.mp4` (and `.voice.wav`, also under `streams/`) of a render process that
  is gone: removed (never a deliverable)

Every action is logged and returned, so a run's log says what it found.
"""

from __future__ import annotations

import json
import logging
import os
import re
import shutil
import time
from pathlib import Path

from clonetrain.product import clone_package, registry

log = logging.getLogger(__name__)

STALE_S = 3600.0
_VERSION = re.compile(r"^v\d{4,}$")


def _remove(path: Path, why: str, actions: list[str]) -> None:
    if path.is_dir() and not path.is_symlink():
        shutil.rmtree(path, ignore_errors=True)
    else:
        path.unlink(missing_ok=True)
    actions.append(f"removed {path.name}: {why}")


def _adopt(root: Path, clone: str, folder: Path, actions: list[str]) -> None:
    from clonetrain.core.workspace import Workspace

    try:
        manifest = clone_package.verify(folder)
    except clone_package.PackageError as err:
        _remove(folder, f"an unregistered, incomplete package ({err.message})", actions)
        return
    if manifest["clone"] != clone or manifest["version"] != folder.name:
        _remove(folder, f"holds {manifest['clone']} {manifest['version']}, not {clone} {folder.name}", actions)
        return
    archive = folder.with_name(f"{clone}-{folder.name}.tar.gz")
    if not archive.is_file():
        clone_package.make_archive(folder, archive)
    metrics_file = folder / clone_package.METRICS
    metrics = json.loads(metrics_file.read_text()) if metrics_file.is_file() else {}
    ingest = Workspace(root, clone).read_manifest("ingest") or {}
    entry = clone_package.registry_entry(root, folder, archive, metrics, ingest.get("counts"), None)
    reason = "adopted: published by a run that stopped before registering it"
    registry.add_version(root, clone, folder.name, entry, reason=reason)
    actions.append(f"adopted {folder.name} as a candidate ({reason})")


def pid_alive(pid: int) -> bool:
    """Is a process with this id running (one of another user counts)?"""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def _dead_renders(root: Path, clone: str, actions: list[str]) -> None:
    folder = root / "renders" / clone
    # Its video being made, and the speech converted into the clone's voice for it (a render's or a stream's).
    leftovers = [*folder.glob(".*.rendering.mp4"), *folder.glob(".*.voice.wav"),
                 *folder.glob("streams/.*.voice.wav")] if folder.is_dir() else []
    for p in leftovers:
        pid = p.name.removesuffix(".rendering.mp4").removesuffix(".voice.wav").rsplit(".", 1)[-1]
        if pid.isdigit() and not pid_alive(int(pid)):
            _remove(p, f"a render (pid {pid}) stopped before it finished", actions)


def reconcile(root: str | Path, clone: str, now: float | None = None) -> list[str]:
    """Reconcile clones/<clone>/ with the registry; returns what was done (also logged)."""
    root = Path(root)
    folder = root / "clones" / clone
    actions: list[str] = []
    _dead_renders(root, clone, actions)
    if not folder.is_dir():
        _log(clone, actions)
        return actions
    now = now or time.time()
    known = registry.read(root)["clones"].get(clone, {}).get("versions", {})
    for p in sorted(folder.iterdir()):
        name = p.name
        if name.startswith(".") and name.endswith(".tmp"):
            _remove(p, "left by a run stopped while publishing", actions)
        elif name.startswith(".") and ".extracting" in name:
            if now - p.stat().st_mtime > STALE_S:
                _remove(p, "left by an extraction that was stopped or refused", actions)
        elif p.is_dir() and _VERSION.match(name) and name not in known:
            _adopt(root, clone, p, actions)
    for version, entry in known.items():
        path = root / entry.get("path", f"clones/{clone}/{version}")
        archive = root / entry["archive"] if entry.get("archive") else None
        if not path.is_dir():
            actions.append(f"warning: registered {version} has no folder {path}")
        elif archive is not None and not archive.is_file():
            try:
                clone_package.verify(path)
            except clone_package.PackageError as err:
                actions.append(f"warning: registered {version} does not verify: {err.message}")
                continue
            clone_package.make_archive(path, archive)
            actions.append(f"rebuilt the missing archive {archive.name}")
    _log(clone, actions)
    return actions


def _log(clone: str, actions: list[str]) -> None:
    for a in actions:
        (log.warning if a.startswith("warning") else log.info)("reconcile %s: %s", clone, a)
