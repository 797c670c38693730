"""What a stage run read: the files of the clone's other stages and the settings. The pipeline records both in the
stage's manifest and reruns the stage only when one of them (or its code) changed, so dependencies are what the
code did, never a list kept beside it.

    with recording(ws.clone) as reads:
        module.run(SettingsView(cfg, reads), ws, out_dir)
    reads.files    # {"faces": ["faces.npz", ...], "evaluate": ["manifest.json"], ...}
    reads.config   # {"faces.crop_scale": 1.5, "ingest.min_speech_s": 20.0, ...}
"""

from __future__ import annotations

import contextlib
import contextvars
from typing import Any, Iterator

from omegaconf import DictConfig, ListConfig, OmegaConf

# Settings that say how and where a run goes, never what it makes: reading them is not a dependency (moving the data
# root or switching the tracker must not retrain a clone).
RUN_CONTROL = frozenset({"stage", "force", "clone", "paths", "logger", "progress_every_s", "hydra"})


class Reads:
    """One stage run's reads of clone `clone`: files {stage: [file, ...]} and settings {dotted key: value}.
    (Other clones' files, which pretrain reads, are its inputs, hashed on their own.)"""

    def __init__(self, clone: str) -> None:
        self.clone = clone
        self.files: dict[str, list[str]] = {}
        self.config: dict[str, Any] = {}

    def note_file(self, clone: str, stage: str, rel: str) -> None:
        if clone != self.clone:
            return
        seen = self.files.setdefault(stage, [])
        if rel not in seen:
            seen.append(rel)

    def note_setting(self, key: str, value: Any) -> None:
        if key.split(".", 1)[0] not in RUN_CONTROL:
            self.config.setdefault(key, value)


_current: contextvars.ContextVar[Reads | None] = contextvars.ContextVar("clonetrain_reads", default=None)


@contextlib.contextmanager
def recording(clone: str) -> Iterator[Reads]:
    """Note every read of `clone`'s stage files inside the block (the pipeline wraps each stage run in one)."""
    reads = Reads(clone)
    token = _current.set(reads)
    try:
        yield reads
    finally:
        _current.reset(token)


def note_file(clone: str, stage: str, rel: str) -> None:
    if (reads := _current.get()) is not None:
        reads.note_file(clone, stage, rel)


def plain(value: Any) -> Any:
    """A setting as JSON-able Python (sections and lists resolved)."""
    if isinstance(value, SettingsView):
        value = value._cfg
    return OmegaConf.to_container(value, resolve=True) if OmegaConf.is_config(value) else value


class SettingsView:
    """The config as a stage sees it: reads like the DictConfig it wraps (cfg.faces.crop_scale, cfg["faces"],
    dict(cfg.model), "x" in cfg, cfg.get("x")) and notes each setting read, by its dotted key. A section is noted
    only when taken whole (`whole`, `dict(...)`), so reading one setting of a section depends on that one only."""

    __slots__ = ("_cfg", "_reads", "_prefix")

    def __init__(self, cfg: DictConfig, reads: Reads, prefix: str = "") -> None:
        object.__setattr__(self, "_cfg", cfg)
        object.__setattr__(self, "_reads", reads)
        object.__setattr__(self, "_prefix", prefix)

    def _key(self, name: str) -> str:
        return f"{self._prefix}.{name}" if self._prefix else str(name)

    def _wrap(self, name: str, value: Any) -> Any:
        key = self._key(name)
        if isinstance(value, DictConfig):
            return SettingsView(value, self._reads, key)
        value = plain(value) if isinstance(value, ListConfig) else value
        self._reads.note_setting(key, value)
        return value

    def __getattr__(self, name: str) -> Any:
        return self._wrap(name, getattr(self._cfg, name))

    def __getitem__(self, name: str) -> Any:
        return self._wrap(name, self._cfg[name])

    def __setattr__(self, name: str, value: Any) -> None:
        raise AttributeError("a stage reads its settings; it never changes them")

    def get(self, name: str, default: Any = None) -> Any:
        return self[name] if name in self._cfg else default

    def __contains__(self, name: str) -> bool:
        return name in self._cfg

    def keys(self):
        return self._cfg.keys()

    def __iter__(self):
        return iter(self._cfg)

    def __len__(self) -> int:
        return len(self._cfg)

    def items(self):
        return [(k, self[k]) for k in self._cfg]

    def values(self):
        return [self[k] for k in self._cfg]

    def whole(self) -> Any:
        """The section as plain Python, noted as read whole (its every setting is a dependency)."""
        value = plain(self._cfg)
        if self._prefix:
            self._reads.note_setting(self._prefix, value)
        else:
            for k in self._cfg:
                self[k]
        return value

    def unrecorded(self) -> DictConfig:
        """The config itself, NOT noted: for copies kept for the record (the package's config.yaml), which are
        not a reason to rebuild."""
        return self._cfg

    def __repr__(self) -> str:
        return f"SettingsView({self._prefix or 'cfg'})"


def whole(section: Any) -> Any:
    """A section as plain Python, noted whole when it is a view (a plain DictConfig is just converted)."""
    return section.whole() if isinstance(section, SettingsView) else plain(section)


def unrecorded(cfg: Any) -> DictConfig:
    """The DictConfig under a view (or the DictConfig given): for copies kept for the record."""
    return cfg.unrecorded() if isinstance(cfg, SettingsView) else cfg
