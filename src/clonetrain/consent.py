"""The consent record every clone needs: data/raw/<clone>/consent.yaml.

Ingest refuses a clone without a valid, unexpired record; the record's hash travels with everything
derived from the footage.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass
from pathlib import Path

import yaml

from clonetrain.errors import ConsentError

FILENAME = "consent.yaml"
REQUIRED = ("person", "recorded_by", "date", "permitted_uses", "expires")

TEMPLATE = """\
# data/raw/{clone}/consent.yaml: the person's consent to be cloned from this footage.
person: "Full name of the person shown"
recorded_by: "Studio or operator who recorded the footage"
date: 2026-01-31            # when consent was given (YYYY-MM-DD)
permitted_uses:             # what the clone may be used for
  - livestream_commerce
expires: 2027-01-31         # after this date the clone must not be trained or rendered
document: "signed-release-0001.pdf"   # optional: where the signed release is kept
"""


@dataclass(frozen=True)
class Consent:
    person: str
    recorded_by: str
    date: dt.date
    permitted_uses: tuple[str, ...]
    expires: dt.date

    def expired(self, today: dt.date | None = None) -> bool:
        return (today or dt.date.today()) > self.expires


def _as_date(value, key: str, path: Path) -> dt.date:
    if isinstance(value, dt.datetime):
        return value.date()
    if isinstance(value, dt.date):
        return value
    try:
        return dt.date.fromisoformat(str(value))
    except ValueError:
        raise ConsentError(f"{path}: '{key}' must be a date like 2027-01-31, not {value!r}") from None


def load(raw_dir: Path, clone: str, today: dt.date | None = None) -> Consent:
    """Read and validate the record; raises ConsentError with a template to fill in."""
    path = raw_dir / FILENAME
    fill = f"create {path} like this:\n{TEMPLATE.format(clone=clone)}"
    if not path.is_file():
        raise ConsentError(f"clone {clone!r} has no consent record ({path} is missing)", fill)
    try:
        data = yaml.safe_load(path.read_text())
    except yaml.YAMLError as err:
        raise ConsentError(f"{path} is not valid YAML: {err}", fill) from None
    if not isinstance(data, dict):
        raise ConsentError(f"{path} must be a mapping of fields", fill)
    missing = [k for k in REQUIRED if data.get(k) in (None, "", [])]
    if missing:
        raise ConsentError(f"{path} lacks {', '.join(missing)}", fill)
    uses = data["permitted_uses"]
    if isinstance(uses, str):
        uses = [uses]
    consent = Consent(
        person=str(data["person"]),
        recorded_by=str(data["recorded_by"]),
        date=_as_date(data["date"], "date", path),
        permitted_uses=tuple(str(u) for u in uses),
        expires=_as_date(data["expires"], "expires", path),
    )
    if consent.expired(today):
        raise ConsentError(
            f"the consent of {consent.person} for clone {clone!r} expired on {consent.expires.isoformat()}",
            f"renew the consent and update 'expires' in {path}",
        )
    return consent
