"""Content hashes, fingerprints and the manifest every stage writes beside its outputs."""

from __future__ import annotations

import ast
import hashlib
import importlib.metadata
import importlib.util
import json
import platform
import subprocess
from dataclasses import dataclass, field
from functools import lru_cache
from pathlib import Path
from typing import Any, Iterable

_CHUNK = 4 << 20


def sha256_file(path: Path, known: dict | None = None) -> str:
    """sha256 of a file. `known` is the entry recorded last time ({sha256,size,mtime_ns}): when size and
    mtime still match, the file is taken as unchanged and not read again (a camera take can be GBs)."""
    st = path.stat()
    if known and known.get("size") == st.st_size and known.get("mtime_ns") == st.st_mtime_ns and known.get("sha256"):
        return known["sha256"]
    h = hashlib.sha256()
    with open(path, "rb") as f:
        while chunk := f.read(_CHUNK):
            h.update(chunk)
    return h.hexdigest()


def file_entry(path: Path, known: dict | None = None) -> dict:
    st = path.stat()
    return {"sha256": sha256_file(path, known), "size": st.st_size, "mtime_ns": st.st_mtime_ns}


def digest(obj: Any) -> str:
    """Stable sha256 of a JSON-able object."""
    return hashlib.sha256(json.dumps(obj, sort_keys=True, default=str).encode()).hexdigest()


# Modules that only log or word errors: their code never shapes an output, so editing them reruns nothing.
LOG_ONLY = frozenset({"clonetrain.core.errors", "clonetrain.core.progress", "clonetrain.core.quiet"})


def module_source(name: str) -> str:
    """The source text of module `name`, read from its file (nothing is imported)."""
    spec = importlib.util.find_spec(name)
    return Path(spec.origin).read_text()


@lru_cache(maxsize=None)
def is_module(name: str) -> bool:
    try:
        return importlib.util.find_spec(name) is not None
    except (ImportError, AttributeError, ValueError):  # `from clonetrain.core.errors import X`: X is not a module
        return False


def import_closure(module: str, package: str = "clonetrain") -> list[str]:
    """Every module of `package` that `module` imports, directly or through others, at the top or inside a
    function (read from the source, so a lazy import counts too), `module` included; sorted."""
    seen: set[str] = set()
    todo = [module]
    while todo:
        name = todo.pop()
        if name in seen:
            continue
        seen.add(name)
        todo += [m for m in _imported(module_source(name), package) if m not in seen]
    return sorted(seen)


@lru_cache(maxsize=1024)
def _imported(source: str, package: str) -> tuple[str, ...]:
    """The modules of `package` that a module's source imports (keyed by the text: an edited module is parsed again)."""
    found = []
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.Import):
            named = [a.name for a in node.names]
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            named = [node.module, *(f"{node.module}.{a.name}" for a in node.names)]
        else:
            continue
        found += [m for m in named if m.split(".")[0] == package and is_module(m)]
    return tuple(dict.fromkeys(found))


def code_hash(modules: Iterable[str]) -> str:
    """Hash of the source of the modules whose code decides a stage's output."""
    h = hashlib.sha256()
    for name in sorted(set(modules) - LOG_ONLY):
        h.update(name.encode())
        h.update(module_source(name).encode())
    return h.hexdigest()


@lru_cache(maxsize=1)
def versions() -> dict[str, str]:
    out = {"python": platform.python_version()}
    for pkg in ("clonetrain", "numpy", "torch", "mediapipe", "librosa", "silero-vad", "face-alignment",
                "ffmpeg-python", "hydra-core", "opencv-python"):
        try:
            out[pkg] = importlib.metadata.version(pkg)
        except importlib.metadata.PackageNotFoundError:
            pass
    try:
        first = subprocess.run(["ffmpeg", "-version"], capture_output=True, text=True, check=True).stdout
        out["ffmpeg"] = first.split("\n", 1)[0].split(" ")[2]
    except (OSError, subprocess.CalledProcessError, IndexError):
        out["ffmpeg"] = "missing"
    return out


@dataclass
class StageResult:
    """What a stage reports besides its files: counts for the manifest, warnings for the user, and the
    lines of its one-screen summary."""

    counts: dict[str, Any] = field(default_factory=dict)
    warnings: list[str] = field(default_factory=list)
    summary: list[str] = field(default_factory=list)
    details: dict[str, Any] = field(default_factory=dict)


def hash_outputs(folder: Path) -> dict[str, dict]:
    return {
        str(p.relative_to(folder)): {"sha256": sha256_file(p), "size": p.stat().st_size}
        for p in sorted(folder.rglob("*"))
        if p.is_file() and p.name != "manifest.json"
    }


def outputs_intact(folder: Path, manifest: dict) -> bool:
    """Cheap check that every recorded output is still there with its size (hashes are checked on demand)."""
    for rel, entry in manifest.get("outputs", {}).items():
        p = folder / rel
        if not p.is_file() or p.stat().st_size != entry["size"]:
            return False
    return True
