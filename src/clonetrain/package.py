"""The packaged clone: a folder (and a .tar.gz of it) that a runtime loads without clonetrain's training code.

This module is the package format: it needs only the standard library to verify a package, and torch to run
its TorchScript generator. Layout of data/clones/<clone>/<version>/:

    manifest.json         format, clone, version, sha256 + size of every file, source takes, versions
    model.safetensors     generator + expert weights
    generator.torchscript (reference | masked frame (1, 6, S, S) in [0, 1], mel window (1, 1, 80, 16)) -> frame
    consent.json          the consent record (its sha256 is in the manifest)
    avatar/               reference.png, footage.mp4 (the clone's usable training footage) + footage.npz (per
                          frame: pose, face box, talking, nodding, run, crop square, landmarks), paste_mask.png,
                          motion.json (segments labelled by speech and head motion, with entry/exit poses)
    voice_profile.json, metrics.json, config.yaml, model_card.md

    import clonetrain.package as pkg
    p = pkg.load("data/clones/anna/v0003")          # or the .tar.gz: extracted beside it, then verified
"""

from __future__ import annotations

import datetime as dt
import hashlib
import json
import os
import shutil
import tarfile
from dataclasses import dataclass
from pathlib import Path

FORMAT = "clonetrain.package/1"
MANIFEST = "manifest.json"


class PackageError(Exception):
    """A package that is missing, tampered with, truncated or unsafe. The message says which file and why."""


def sha256(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        while chunk := f.read(1 << 20):
            h.update(chunk)
    return h.hexdigest()


def file_table(folder: Path) -> dict[str, dict]:
    return {p.relative_to(folder).as_posix(): {"sha256": sha256(p), "size": p.stat().st_size}
            for p in sorted(folder.rglob("*")) if p.is_file() and p.name != MANIFEST}


@dataclass(frozen=True)
class Package:
    path: Path
    manifest: dict

    @property
    def clone(self) -> str:
        return self.manifest["clone"]

    @property
    def version(self) -> str:
        return self.manifest["version"]

    @property
    def consent(self) -> dict:
        return json.loads((self.path / "consent.json").read_text())

    def consent_valid(self, today: dt.date | None = None) -> bool:
        return (today or dt.date.today()) <= dt.date.fromisoformat(self.consent["expires"])

    def generator(self, device: str = "cpu"):
        """The TorchScript generator; needs torch only."""
        import torch

        return torch.jit.load(str(self.path / "generator.torchscript"), map_location=device).eval()


def verify(folder: Path) -> dict:
    """Check every file against the manifest: nothing missing, nothing changed, nothing added."""
    mpath = folder / MANIFEST
    if not mpath.is_file():
        raise PackageError(f"{folder} is not a clone package: {MANIFEST} is missing")
    try:
        manifest = json.loads(mpath.read_text())
    except json.JSONDecodeError as err:
        raise PackageError(f"{mpath} is damaged: {err}") from None
    if manifest.get("format") != FORMAT:
        raise PackageError(f"{folder} has package format {manifest.get('format')!r}, expected {FORMAT!r}")
    actual = {p.relative_to(folder).as_posix() for p in folder.rglob("*") if p.is_file() and p.name != MANIFEST}
    expected = manifest["files"]
    if missing := sorted(set(expected) - actual):
        raise PackageError(f"package {folder} is incomplete: missing {', '.join(missing)}")
    if extra := sorted(actual - set(expected)):
        raise PackageError(f"package {folder} holds files its manifest does not list: {', '.join(extra)}")
    for name, entry in expected.items():
        p = folder / name
        if p.stat().st_size != entry["size"]:
            raise PackageError(f"package {folder}: {name} has {p.stat().st_size} bytes, the manifest says "
                               f"{entry['size']} (truncated or replaced)")
        if sha256(p) != entry["sha256"]:
            raise PackageError(f"package {folder}: {name} was changed after packaging (sha256 mismatch)")
    consent = folder / "consent.json"
    if manifest.get("consent_sha256") and sha256(consent) != manifest["consent_sha256"]:
        raise PackageError(f"package {folder}: the consent record does not match the one it was built with")
    return manifest


def safe_extract(archive: Path, target: Path) -> Path:
    """Extract a package archive into `target`; refuses any member that would land outside it (absolute
    paths, '..', links, devices). Returns the package folder."""
    target = target.resolve()
    try:
        with tarfile.open(archive, "r:*") as tar:
            members = tar.getmembers()
            for m in members:
                dest = (target / m.name).resolve()
                if m.name.startswith("/") or (dest != target and target not in dest.parents):
                    raise PackageError(f"{archive}: member {m.name!r} would be written outside {target}; refused")
                if not (m.isfile() or m.isdir()):
                    raise PackageError(f"{archive}: member {m.name!r} is a link or device; refused")
            tmp = target.parent / f".{target.name}.extracting"
            shutil.rmtree(tmp, ignore_errors=True)
            tmp.mkdir(parents=True)
            for m in members:
                if m.isdir():
                    (tmp / m.name).mkdir(parents=True, exist_ok=True)
                    continue
                (tmp / m.name).parent.mkdir(parents=True, exist_ok=True)
                src = tar.extractfile(m)
                with open(tmp / m.name, "wb") as out:
                    shutil.copyfileobj(src, out)
    except (tarfile.TarError, EOFError, OSError) as err:
        raise PackageError(f"{archive} is not a readable package archive ({err})") from None
    entries = list(tmp.iterdir())
    folder = entries[0] if len(entries) == 1 and entries[0].is_dir() else tmp  # archives hold one top folder
    if target.exists():
        shutil.rmtree(target)
    os.replace(folder, target)
    shutil.rmtree(tmp, ignore_errors=True)
    return target


def load(path: str | os.PathLike) -> Package:
    """Open a package folder or archive, verifying every checksum; raises PackageError."""
    path = Path(path)
    if not path.exists():
        raise PackageError(f"no package at {path}")
    if path.is_file():
        name = path.name
        for suffix in (".tar.gz", ".tgz", ".tar"):
            if name.endswith(suffix):
                name = name[: -len(suffix)]
        path = safe_extract(path, path.parent / name)
    return Package(path=path, manifest=verify(path))


def make_archive(folder: Path, archive: Path) -> None:
    """Write folder as archive (one top-level directory named like the folder), atomically."""
    tmp = archive.with_name(f".{archive.name}.tmp")
    with tarfile.open(tmp, "w:gz") as tar:
        tar.add(folder, arcname=folder.name)
    os.replace(tmp, archive)
