"""The packaged clone: a folder (and a .tar.gz of it) that a runtime loads without clonetrain's training code.

This module is the package format: it needs only the standard library to verify a package, and torch to run
its TorchScript generator. Layout of data/clones/<clone>/<version>/:

    manifest.json         format, clone, version, sha256 + size of every file, source takes, versions
    model.safetensors     generator + expert weights
    generator.torchscript (reference | masked frame (1, 6, S, S) in [0, 1], audio window (1, 1, channels, window):
                          the manifest's "audio" FeatureSpec says which) -> frame
    consent.json          the consent record (its sha256 is in the manifest)
    avatar/               reference.png, footage.mp4 (the clone's usable training footage) + footage.npz (per
                          frame: pose, face box, talking, nodding, run, crop square, landmarks), paste_mask.png,
                          motion.json (segments labelled by speech and head motion, with entry/exit poses),
                          mouth_bank.npz (lower halves of training face crops: the mouth and detail render adds,
                          clonetrain.vision.mouth_texture; absent in packages made before it)
    voice_profile.json, metrics.json, config.yaml, model_card.md

    import clonetrain.product.clone_package as pkg
    p = pkg.load("data/clones/anna/v0003")          # or the .tar.gz: extracted beside it, then verified
    with pkg.opened("anna-v0003.tar.gz") as p: ...  # an archive in a temporary folder, removed afterwards

verify() proves a package is intact, not that this studio built it: an edited package with recomputed hashes
verifies. registry.check_trusted(root, p) decides that (the manifest hash registered at publishing, or an HMAC
signature under the studio key, manifest.sig); consent.require_live(root, clone, use) decides whether it may be
used today.
"""

from __future__ import annotations

import contextlib
import hashlib
import hmac
import json
import os
import shutil
import tarfile
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Iterator

from clonetrain.evaluation import verdict
from clonetrain.core.errors import ClonetrainError

FORMAT = "clonetrain.package/1"
MANIFEST = "manifest.json"
# The files a package copies from the stages keep their stage names (contract.files: train's model, evaluate's
# metrics, ingest's consent), so a package folder and an evaluate/ folder answer to the same metrics file. Written
# out here so that verifying a package needs the standard library alone; test_contract checks they agree.
MODEL, METRICS, CONSENT = "model.safetensors", "metrics.json", "consent.json"
CARD = "model_card.md"
# HMAC-SHA256 of manifest.json under the studio's signing key, when one is configured ($CLONETRAIN_SIGNING_KEY
# names the key file). It signs the manifest, so it cannot be listed in it.
SIGNATURE = "manifest.sig"
SIGNING_KEY_ENV = "CLONETRAIN_SIGNING_KEY"
NOT_LISTED = (MANIFEST, SIGNATURE)


class PackageError(ClonetrainError):
    """A package that is missing, tampered with, truncated or unsafe. The message says which file and why."""


def sha256(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        while chunk := f.read(1 << 20):
            h.update(chunk)
    return h.hexdigest()


def file_table(folder: Path) -> dict[str, dict]:
    return {p.relative_to(folder).as_posix(): {"sha256": sha256(p), "size": p.stat().st_size}
            for p in sorted(folder.rglob("*")) if p.is_file() and p.name not in NOT_LISTED}


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
    def manifest_sha256(self) -> str:
        """The package's identity: the registry stores it, and every file's hash is inside it."""
        return sha256(self.path / MANIFEST)

    @property
    def consent(self) -> dict:
        return json.loads((self.path / CONSENT).read_text())

    def generator(self, device: str = "cpu"):
        """The TorchScript generator; needs torch only."""
        import torch

        return torch.jit.load(str(self.path / "generator.torchscript"), map_location=device).eval()


def signing_key() -> bytes | None:
    """The studio's package signing key, if one is configured ($CLONETRAIN_SIGNING_KEY: a key file)."""
    name = os.environ.get(SIGNING_KEY_ENV)
    if not name:
        return None
    path = Path(name).expanduser()
    if not path.is_file() or path.stat().st_size < 16:
        raise PackageError(f"${SIGNING_KEY_ENV} names {path}, which is not a key file of at least 16 bytes",
                           f"create one (e.g. head -c 32 /dev/urandom > {path}) or unset ${SIGNING_KEY_ENV}")
    return path.read_bytes()


def sign(folder: Path, key: bytes) -> None:
    mac = hmac.new(key, (folder / MANIFEST).read_bytes(), hashlib.sha256).hexdigest()
    tmp = folder / f".{SIGNATURE}.tmp"
    tmp.write_text(mac + "\n")
    os.replace(tmp, folder / SIGNATURE)


def signature_valid(folder: Path, key: bytes) -> bool:
    sig = folder / SIGNATURE
    if not sig.is_file():
        return False
    mac = hmac.new(key, (folder / MANIFEST).read_bytes(), hashlib.sha256).hexdigest()
    return hmac.compare_digest(mac, sig.read_text().strip())


def _check_manifest(folder: Path, manifest: object) -> dict:
    """A manifest of the right shape, so a damaged one is a PackageError, never a KeyError."""
    if not isinstance(manifest, dict):
        raise PackageError(f"{folder / MANIFEST} is damaged: not a JSON object")
    if manifest.get("format") != FORMAT:
        raise PackageError(f"{folder} has package format {manifest.get('format')!r}, expected {FORMAT!r}")
    files = manifest.get("files")
    if not isinstance(files, dict) or not files or not all(
            isinstance(e, dict) and isinstance(e.get("sha256"), str) and isinstance(e.get("size"), int)
            for e in files.values()):
        raise PackageError(f"{folder / MANIFEST} is damaged: it has no valid 'files' table",
                           "use the package as it was published (data/clones/<clone>/<version>/ or its .tar.gz)")
    for key in ("clone", "version"):
        if not isinstance(manifest.get(key), str):
            raise PackageError(f"{folder / MANIFEST} is damaged: no '{key}'")
    return manifest


def verify(folder: Path) -> dict:
    """Check every file against the manifest: nothing missing, nothing changed, nothing added."""
    mpath = folder / MANIFEST
    if not mpath.is_file():
        raise PackageError(f"{folder} is not a clone package: {MANIFEST} is missing")
    try:
        manifest = _check_manifest(folder, json.loads(mpath.read_text()))
    except (json.JSONDecodeError, UnicodeDecodeError) as err:
        raise PackageError(f"{mpath} is damaged: {err}") from None
    actual = {p.relative_to(folder).as_posix() for p in folder.rglob("*") if p.is_file() and p.name not in NOT_LISTED}
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
    consent = folder / CONSENT
    if manifest.get("consent_sha256") and sha256(consent) != manifest["consent_sha256"]:
        raise PackageError(f"package {folder}: the consent record does not match the one it was built with")
    return manifest


def _extract_into(archive: Path, scratch: Path) -> Path:
    """Extract a package archive into the empty folder `scratch`; refuses any member that would land outside it
    (absolute paths, '..', links, devices). Returns the package folder inside it."""
    scratch = scratch.resolve()
    try:
        with tarfile.open(archive, "r:*") as tar:
            members = tar.getmembers()
            for m in members:
                dest = (scratch / m.name).resolve()
                if m.name.startswith("/") or (dest != scratch and scratch not in dest.parents):
                    raise PackageError(f"{archive}: member {m.name!r} would be written outside its folder; refused")
                if not (m.isfile() or m.isdir()):
                    raise PackageError(f"{archive}: member {m.name!r} is a link or device; refused")
            for m in members:
                if m.isdir():
                    (scratch / m.name).mkdir(parents=True, exist_ok=True)
                    continue
                (scratch / m.name).parent.mkdir(parents=True, exist_ok=True)
                src = tar.extractfile(m)
                with open(scratch / m.name, "wb") as out:
                    shutil.copyfileobj(src, out)
    except (tarfile.TarError, EOFError, OSError, ValueError) as err:
        raise PackageError(f"{archive} is not a readable package archive ({err})") from None
    entries = list(scratch.iterdir())
    return entries[0] if len(entries) == 1 and entries[0].is_dir() else scratch  # archives hold one top folder


def _same_package(a: Path, b: Path) -> bool:
    try:
        return sha256(a / MANIFEST) == sha256(b / MANIFEST) and verify(a) is not None
    except (OSError, PackageError):
        return False


def safe_extract(archive: Path, target: Path) -> Path:
    """Extract a package archive to `target` without ever touching an existing folder: it is built in a fresh
    temporary folder beside it and verified, then renamed into place. If `target` already holds the same package
    (verified), that extraction is reused; if it holds anything else, the load is refused and both are left as
    they were. Returns the package folder."""
    target = Path(target)
    target.parent.mkdir(parents=True, exist_ok=True)
    scratch = Path(tempfile.mkdtemp(prefix=f".{target.name}.extracting-", dir=target.parent))
    try:
        folder = _extract_into(archive, scratch)
        verify(folder)
        if target.exists() or target.is_symlink():
            if _same_package(target, folder):
                return target  # already extracted and intact: reuse it, discard the fresh copy
            raise PackageError(f"{target} already exists and is not this archive's package; it was left untouched",
                               f"move {target} away to extract {archive.name} there, or load {target} itself")
        try:
            os.rename(folder, target)  # never replaces: target did not exist a moment ago
        except OSError:
            if _same_package(target, folder):
                return target  # another process extracted the same package meanwhile
            raise PackageError(f"{target} appeared while {archive.name} was being extracted; left untouched") from None
        return target
    finally:
        shutil.rmtree(scratch, ignore_errors=True)


def archive_stem(path: Path) -> str:
    name = path.name
    for suffix in (".tar.gz", ".tgz", ".tar"):
        if name.endswith(suffix):
            return name[: -len(suffix)]
    return name


def load(path: str | os.PathLike) -> Package:
    """Open a package folder or archive (extracted beside it, see safe_extract), verifying every checksum;
    raises PackageError."""
    path = Path(path)
    if not path.exists():
        raise PackageError(f"no package at {path}", "check the path, or list the packages: python -m clonetrain registry list")
    if path.is_file():
        path = safe_extract(path, path.parent / archive_stem(path))
    return Package(path=path, manifest=verify(path))


@contextlib.contextmanager
def opened(path: str | os.PathLike) -> Iterator[Package]:
    """A verified package for as long as the block runs: a folder as it is, an archive extracted into a temporary
    folder that is removed afterwards (a render leaves no copy behind)."""
    path = Path(path)
    if not path.exists():
        raise PackageError(f"no package at {path}", "check the path, or list the packages: python -m clonetrain registry list")
    if path.is_dir():
        yield Package(path=path, manifest=verify(path))
        return
    # In the system's temporary folder, not beside the archive: nothing of it is left in the studio's folders.
    with tempfile.TemporaryDirectory(prefix=f"clonetrain-{archive_stem(path)}.extracting-") as scratch:
        folder = _extract_into(path, Path(scratch))
        yield Package(path=folder, manifest=verify(folder))


def make_archive(folder: Path, archive: Path) -> None:
    """Write folder as archive (one top-level directory named like the folder), atomically."""
    tmp = archive.with_name(f".{archive.name}.tmp")
    with tarfile.open(tmp, "w:gz") as tar:
        tar.add(folder, arcname=folder.name)
    os.replace(tmp, archive)


def registry_entry(root: Path, folder: Path, archive: Path, metrics: dict, ingest_counts: dict | None,
                   config_digest: str | None) -> dict:
    """What the registry keeps of a published package: where it is, its manifest hash (the package's identity,
    checked at every render), the held-out metrics and targets the promotion floor reads."""
    manifest = json.loads((folder / MANIFEST).read_text())
    # What `registry list` shows as the verdict: evaluate's, as the package's metrics.json holds it (here, so a
    # version adopted after a killed publish has it too).
    judged = verdict.of_metrics(metrics)
    return {
        "path": str(folder.relative_to(root)), "archive": str(archive.relative_to(root)),
        "package_sha256": sha256(folder / MANIFEST), "metrics": manifest["metrics"],
        "targets": metrics.get("targets", {}),
        "lipsync_ready": (ingest_counts or {}).get("lipsync_ready"),
        "takes": [t["sha256"] for t in manifest.get("source_takes", []) if t["status"] == "ok"],
        "config_digest": config_digest,
        "verdict": {k: judged[k] for k in ("level", "missed", "targets")} if judged else None,
    }
