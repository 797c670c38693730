"""The studio's settings file (YAML): where the data is, who may do what, upload limits, job overrides.

    # studio.yaml                      python -m clonetrain.studio --config studio.yaml
    root: data                         # the pipeline's data root (default: $CLONETRAIN_DATA or the project's data/)
    host: 127.0.0.1                    # localhost only unless you mean otherwise
    port: 8600
    max_upload_mb: 2048                # one take or one speech file
    max_document_mb: 20                # the signed consent document
    session_hours: 12
    pipeline_overrides: []             # Hydra overrides added to every job, e.g. [train.max_minutes=30]
    users:
      anna: {roles: [upload, approve, render], password: "scrypt$..."}   # add-user writes these

A relative `root` is relative to the settings file's folder.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import yaml

from clonetrain.core.errors import ClonetrainError

ROLES = ("upload", "approve", "render", "admin")
LOCALHOST = ("127.0.0.1", "localhost", "::1")


class SettingsError(ClonetrainError):
    """The studio's settings file is missing, malformed or names an unknown role."""


@dataclass(frozen=True)
class User:
    name: str
    roles: frozenset[str]
    password: str  # a hash from clonetrain.studio.auth.hash_password, never the password

    def may(self, role: str) -> bool:
        return "admin" in self.roles or role in self.roles


@dataclass(frozen=True)
class Settings:
    root: Path
    host: str = "127.0.0.1"
    port: int = 8600
    max_upload_mb: float = 2048.0
    max_document_mb: float = 20.0
    session_hours: float = 12.0
    pipeline_overrides: tuple[str, ...] = ()
    users: dict[str, User] = field(default_factory=dict)
    path: Path | None = None  # the file these came from (add-user writes back to it)

    @property
    def studio_dir(self) -> Path:
        """Everything the studio itself writes (audit log, jobs, uploads in flight, temporary files)."""
        return self.root / "studio"

    @property
    def max_upload_bytes(self) -> int:
        return int(self.max_upload_mb * 2**20)

    @property
    def max_document_bytes(self) -> int:
        return int(self.max_document_mb * 2**20)


def _users(data: object, path: Path) -> dict[str, User]:
    if data in (None, {}):
        return {}
    if not isinstance(data, dict):
        raise SettingsError(f"{path}: 'users' must be a mapping of user name to {{roles, password}}")
    users = {}
    for name, entry in data.items():
        if not isinstance(entry, dict) or not entry.get("password") or not isinstance(entry.get("roles"), list):
            raise SettingsError(f"{path}: user {name!r} needs 'roles' (a list) and 'password' (a hash)",
                                f"add it with: python -m clonetrain.studio add-user {name} --roles upload "
                                f"--config {path}")
        if unknown := [r for r in entry["roles"] if r not in ROLES]:
            raise SettingsError(f"{path}: user {name!r} has unknown role(s) {', '.join(map(str, unknown))}",
                                f"use only: {', '.join(ROLES)}")
        users[str(name)] = User(str(name), frozenset(entry["roles"]), str(entry["password"]))
    return users


def load(path: str | Path | None) -> Settings:
    """Read the settings file (None: defaults, no users, which serves nothing but a page saying to add one)."""
    from clonetrain.core.config import default_data_root

    if path is None:
        return Settings(root=Path(default_data_root()).resolve())
    path = Path(path).resolve()
    if not path.is_file():
        raise SettingsError(f"the studio settings file {path} does not exist",
                            f"create it with a user: python -m clonetrain.studio add-user NAME --roles admin "
                            f"--config {path}")
    try:
        data = yaml.safe_load(path.read_text()) or {}
    except yaml.YAMLError as err:
        raise SettingsError(f"{path} is not valid YAML: {err}") from None
    if not isinstance(data, dict):
        raise SettingsError(f"{path} must be a mapping of settings")
    known = {"root", "host", "port", "max_upload_mb", "max_document_mb", "session_hours", "pipeline_overrides", "users"}
    if unknown := sorted(set(data) - known):
        raise SettingsError(f"{path}: unknown setting(s) {', '.join(unknown)}", f"known settings: {', '.join(sorted(known))}")
    root = Path(data["root"]) if data.get("root") else Path(default_data_root())
    overrides = data.get("pipeline_overrides") or []
    if not isinstance(overrides, list) or not all(isinstance(o, str) for o in overrides):
        raise SettingsError(f"{path}: 'pipeline_overrides' must be a list of Hydra overrides like train.max_minutes=30")
    try:
        return Settings(root=(path.parent / root).resolve(), host=str(data.get("host", "127.0.0.1")),
                        port=int(data.get("port", 8600)), max_upload_mb=float(data.get("max_upload_mb", 2048)),
                        max_document_mb=float(data.get("max_document_mb", 20)),
                        session_hours=float(data.get("session_hours", 12)), pipeline_overrides=tuple(overrides),
                        users=_users(data.get("users"), path), path=path)
    except (TypeError, ValueError) as err:
        raise SettingsError(f"{path}: {err}") from None


def add_user(path: str | Path, name: str, roles: list[str], password_hash: str) -> None:
    """Add (or replace) a user in the settings file, written atomically; the rest of the file is kept."""
    from clonetrain.core.workspace import validate_clone_id, write_text_atomic

    validate_clone_id(name)  # the same safe alphabet: a user name shows up in logs and the audit trail
    if unknown := [r for r in roles if r not in ROLES]:
        raise SettingsError(f"unknown role(s) {', '.join(unknown)}", f"use only: {', '.join(ROLES)}")
    path = Path(path)
    data = (yaml.safe_load(path.read_text()) or {}) if path.is_file() else {"host": "127.0.0.1", "port": 8600}
    data.setdefault("users", {})
    data["users"] = data["users"] or {}
    data["users"][name] = {"roles": list(roles), "password": password_hash}
    write_text_atomic(path, yaml.safe_dump(data, sort_keys=False))
