"""The consent record every clone needs: data/raw/<clone>/consent.yaml. It is live: the record on disk now decides.

Ingest refuses a clone without a valid record; the record's hash travels with everything derived from the
footage. A copy is frozen into the ingest output and into every package, but the copy only proves what the
package was built under: training, rendering and any runtime ask `require_live`, which reads the clone's current
record, so a consent that was revoked, has expired, was deleted or does not permit the use stops them at once.

    from clonetrain.product import consent
    consent.require_live(root, "anna", use="render")     # raises ConsentError, else returns the Consent

    python -m clonetrain consent status anna [--root data]
    python -m clonetrain consent revoke anna [--root data] [--date 2026-11-25]
"""

from __future__ import annotations

import argparse
import datetime as dt
import sys
from dataclasses import dataclass, field
from pathlib import Path

import yaml

from clonetrain.core.errors import ConsentError

FILENAME = "consent.yaml"
REQUIRED = ("person", "recorded_by", "date", "permitted_uses", "expires")

# What each permitted use allows. `train` covers preprocessing, training, evaluation and packaging; `render` covers
# every video the clone makes. A use not listed here is refused: a typo must not silently grant or deny anything.
USES: dict[str, frozenset[str]] = {
    "render": frozenset({"train", "render"}),               # any rendering the studio's release allows
    "livestream_commerce": frozenset({"train", "render"}),  # selling on live streams
    "live": frozenset({"train", "render"}),                 # live streaming in general
    "advertising": frozenset({"train", "render"}),
    "social_media": frozenset({"train", "render"}),
    "pipeline_testing": frozenset({"train", "render"}),     # test output of the pipeline itself, never published
    "research": frozenset({"train"}),                       # train and evaluate only: nothing is rendered
}
ACTIONS = ("train", "render")

TEMPLATE = """\
# data/raw/{clone}/consent.yaml: the person's consent to be cloned from this footage.
person: "Full name of the person shown"
recorded_by: "Studio or operator who recorded the footage"
date: 2026-01-31            # when consent was given (YYYY-MM-DD), not after today
permitted_uses:             # a list, each one of: {uses}
  - livestream_commerce
expires: 2027-01-31         # after this date the clone must not be trained or rendered
document: "signed-release-0001.pdf"   # optional: where the signed release is kept
# revoked: 2026-06-01       # the person withdrew consent on this date: nothing is trained or rendered from then
"""


class _Loader(yaml.SafeLoader):
    """Safe YAML with dates left as text: YAML's own date parsing raises a bare ValueError on 2030-02-30, and we
    want to say which field is wrong."""


_Loader.yaml_implicit_resolvers = {
    first: [r for r in resolvers if r[0] != "tag:yaml.org,2002:timestamp"]
    for first, resolvers in yaml.SafeLoader.yaml_implicit_resolvers.items()
}


@dataclass(frozen=True)
class Consent:
    person: str
    recorded_by: str
    date: dt.date
    permitted_uses: tuple[str, ...]
    expires: dt.date
    revoked: dt.date | None = None
    sha256: str = field(default="", compare=False)

    def expired(self, today: dt.date | None = None) -> bool:
        return (today or dt.date.today()) > self.expires

    def is_revoked(self, today: dt.date | None = None) -> bool:
        return self.revoked is not None and (today or dt.date.today()) >= self.revoked

    def permits(self, use: str) -> bool:
        """Is `use` (an action such as render, or a named use such as livestream_commerce) permitted?"""
        if use in USES:
            return use in self.permitted_uses or (use in ACTIONS and any(use in USES[u] for u in self.permitted_uses))
        return any(use in USES[u] for u in self.permitted_uses)

    def as_record(self) -> dict:
        """The JSON form frozen into the ingest output and packages."""
        return {"person": self.person, "recorded_by": self.recorded_by, "date": self.date.isoformat(),
                "permitted_uses": list(self.permitted_uses), "expires": self.expires.isoformat(),
                **({"revoked": self.revoked.isoformat()} if self.revoked else {}), "sha256": self.sha256}


def _template(clone: str) -> str:
    return TEMPLATE.format(clone=clone, uses=", ".join(USES))


def _as_date(value, key: str, path: Path) -> dt.date:
    if isinstance(value, dt.datetime):
        return value.date()
    if isinstance(value, dt.date):
        return value
    try:
        return dt.date.fromisoformat(str(value).strip())
    except ValueError:
        # YAML leaves an impossible date (2030-02-30) as a string: it lands here too.
        raise ConsentError(f"{path}: '{key}' must be a real date like 2027-01-31, not {value!r}",
                           f"correct '{key}' in {path}") from None


def _as_uses(value, path: Path) -> tuple[str, ...]:
    if isinstance(value, str):
        value = [value]  # a single use written without brackets
    if not isinstance(value, list) or not value or not all(isinstance(u, str) and u.strip() for u in value):
        raise ConsentError(f"{path}: 'permitted_uses' must be a list of uses, not {value!r}",
                           f"write it as a list, e.g. permitted_uses: [livestream_commerce]; known uses: "
                           f"{', '.join(USES)}")
    uses = tuple(u.strip() for u in value)
    if unknown := [u for u in uses if u not in USES]:
        raise ConsentError(f"{path}: unknown permitted use(s) {', '.join(map(repr, unknown))}",
                           f"use only: {', '.join(USES)}")
    return uses


def parse(path: Path, clone: str) -> Consent:
    """Read and validate the record's form (not whether it is in force today); raises ConsentError."""
    from clonetrain.core.manifest import sha256_file

    fill = f"create {path} like this:\n{_template(clone)}"
    if not path.is_file():
        if not path.parent.is_dir():
            raise ConsentError(f"clone {clone!r} does not exist: there is no folder {path.parent}",
                               f"check the clone id, or put its takes and {FILENAME} into {path.parent}")
        raise ConsentError(f"clone {clone!r} has no consent record ({path} is missing)", fill)
    try:
        data = yaml.load(path.read_text(), Loader=_Loader)  # noqa: S506 - a SafeLoader
    except (yaml.YAMLError, UnicodeDecodeError) as err:
        raise ConsentError(f"{path} is not valid YAML: {err}", fill) from None
    if not isinstance(data, dict):
        raise ConsentError(f"{path} must be a mapping of fields", fill)
    missing = [k for k in REQUIRED if data.get(k) in (None, "", [], {})]
    if missing:
        raise ConsentError(f"{path} lacks {', '.join(missing)}", fill)
    consent = Consent(
        person=str(data["person"]),
        recorded_by=str(data["recorded_by"]),
        date=_as_date(data["date"], "date", path),
        permitted_uses=_as_uses(data["permitted_uses"], path),
        expires=_as_date(data["expires"], "expires", path),
        revoked=_as_date(data["revoked"], "revoked", path) if data.get("revoked") not in (None, "") else None,
        sha256=sha256_file(path),
    )
    if consent.date > consent.expires:
        raise ConsentError(f"{path}: the consent is dated {consent.date} but expires before that, on "
                           f"{consent.expires}", f"correct 'date' or 'expires' in {path}")
    return consent


def in_force(consent: Consent, path: Path, clone: str, use: str, today: dt.date | None = None) -> Consent:
    """Refuse a record that is revoked, not yet given, expired, or does not permit `use`."""
    today = today or dt.date.today()
    who = f"the consent of {consent.person} for clone {clone!r}"
    if consent.is_revoked(today):
        raise ConsentError(f"{who} was revoked on {consent.revoked}: nothing may be trained or rendered",
                           f"only a new, signed consent re-enables the clone (replace {path})")
    if consent.date > today:
        raise ConsentError(f"{path}: the consent is dated {consent.date}, after today ({today})",
                           f"correct 'date' in {path} to the day consent was given")
    if consent.expired(today):
        raise ConsentError(f"{who} expired on {consent.expires.isoformat()}",
                           f"renew the consent and update 'expires' in {path}")
    if not consent.permits(use):
        raise ConsentError(f"{who} does not permit {use!r} (permitted: {', '.join(consent.permitted_uses)})",
                           f"only with the person's consent: add a use that allows it to permitted_uses in {path}")
    return consent


def load(raw_dir: Path, clone: str, today: dt.date | None = None, use: str = "train") -> Consent:
    """Read, validate and require the record in force for `use`; raises ConsentError with a template to fill in."""
    path = Path(raw_dir) / FILENAME
    return in_force(parse(path, clone), path, clone, use, today)


def require_live(root: str | Path, clone: str, use: str = "render", today: dt.date | None = None) -> Consent:
    """The one check every runtime makes before using a clone: its CURRENT record in raw/<clone>/ permits `use`
    today. Deleted, revoked, expired or not permitting the use: ConsentError."""
    from clonetrain.core.workspace import Workspace

    return load(Workspace(root, clone).raw_dir, clone, today, use)


def check_frozen(frozen: dict, current: Consent, clone: str, where: str) -> None:
    """A package's (or training output's) frozen copy must be the same person's consent as the live record; the
    live record alone decides dates and uses, so a renewal needs no retraining and an edited copy grants nothing."""
    if not isinstance(frozen, dict) or str(frozen.get("person")) != current.person:
        raise ConsentError(f"{where} was built under the consent of {frozen.get('person') if isinstance(frozen, dict) else '?'!r}, "
                           f"but clone {clone!r}'s consent record is for {current.person!r}",
                           "render only packages built from this clone's own footage and consent")


def revoke(root: str | Path, clone: str, on: dt.date | None = None) -> Path:
    """Mark the clone's consent revoked (a `revoked:` line appended, atomically; the rest of the file is kept)."""
    from clonetrain.core.workspace import Workspace, write_text_atomic

    path = Workspace(root, clone).raw_dir / FILENAME
    current = parse(path, clone)
    on = on or dt.date.today()
    text = path.read_text()
    if current.revoked is not None:
        lines = [ln for ln in text.splitlines() if not ln.startswith("revoked:")]
        text = "\n".join(lines) + "\n"
    if not text.endswith("\n"):
        text += "\n"
    write_text_atomic(path, text + f"revoked: {on.isoformat()}\n")
    return path


def main(argv: list[str] | None = None) -> int:
    from clonetrain.core.config import default_data_root
    from clonetrain.core.errors import ClonetrainError

    ap = argparse.ArgumentParser(prog="python -m clonetrain consent", description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--root", type=Path, default=Path(default_data_root()))
    sub = ap.add_subparsers(dest="cmd", required=True)
    st = sub.add_parser("status", help="is the clone's consent in force, and for what")
    st.add_argument("clone")
    rv = sub.add_parser("revoke", help="record that the person withdrew consent")
    rv.add_argument("clone")
    rv.add_argument("--date", type=dt.date.fromisoformat, default=None)
    args = ap.parse_args(argv)
    try:
        if args.cmd == "revoke":
            path = revoke(args.root, args.clone, args.date)
            print(f"{args.clone}: consent revoked ({path}); training and renders are refused from now on")
            return 0
        c = require_live(args.root, args.clone, use="train")
        print(f"{args.clone}: consent of {c.person} in force until {c.expires}; permitted: "
              f"{', '.join(c.permitted_uses)}; render {'allowed' if c.permits('render') else 'NOT allowed'}")
        return 0
    except ClonetrainError as err:
        print(err, file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
