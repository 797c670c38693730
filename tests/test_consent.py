"""Consent is validated strictly and is live: the record on disk now decides, and it can be withdrawn."""

import datetime as dt
import subprocess
import sys

import pytest

from clonetrain.product import consent
from clonetrain.core.errors import ConsentError

TODAY = dt.date(2026, 6, 1)
GOOD = "person: A\nrecorded_by: B\ndate: 2026-01-01\npermitted_uses: [livestream_commerce]\nexpires: 2027-01-01\n"


def _root(tmp_path, text=GOOD, clone="anna"):
    raw = tmp_path / "raw" / clone
    raw.mkdir(parents=True, exist_ok=True)
    (raw / "consent.yaml").write_text(text)
    return tmp_path


@pytest.mark.parametrize("text, match", [
    (GOOD.replace("2027-01-01", "2030-02-30"), "'expires' must be a real date"),  # YAML leaves it a string
    (GOOD.replace("[livestream_commerce]", "5"), "must be a list of uses"),
    (GOOD.replace("[livestream_commerce]", "{render: false}"), "must be a list of uses"),
    (GOOD.replace("[livestream_commerce]", "[renders]"), "unknown permitted use"),
    (GOOD.replace("date: 2026-01-01", "date: 2027-06-01"), "expires before that"),
    (GOOD.replace("date: 2026-01-01", "date: 2026-09-01"), "after today"),
    (GOOD + "revoked: 2026-05-01\n", "revoked on 2026-05-01"),
    (GOOD.replace("2027-01-01", "2026-05-31"), "expired on 2026-05-31"),
    (GOOD.replace("[livestream_commerce]", "[research]"), "does not permit 'render'"),
    (GOOD + "revoked: 2026-02-30\n", "'revoked' must be a real date"),
])
def test_strict_and_live_consent_is_refused_with_a_clear_error(tmp_path, text, match):
    root = _root(tmp_path, text)
    with pytest.raises(ConsentError, match=match):
        consent.require_live(root, "anna", use="render", today=TODAY)


def test_uses_permit_actions_and_named_uses(tmp_path):
    c = consent.require_live(_root(tmp_path), "anna", use="render", today=TODAY)
    assert c.permits("render") and c.permits("train") and c.permits("livestream_commerce")
    assert not c.permits("advertising") and not c.permits("no_such_use")
    research = consent.parse(_root(tmp_path, GOOD.replace("[livestream_commerce]", "[research]")) / "raw" / "anna"
                             / "consent.yaml", "anna")
    assert research.permits("train") and not research.permits("render")
    with pytest.raises(ConsentError, match="does not permit 'advertising'"):
        consent.require_live(tmp_path, "anna", use="advertising", today=TODAY)


def test_deleted_consent_and_a_missing_clone_are_told_apart(tmp_path):
    root = _root(tmp_path)
    (root / "raw" / "anna" / "consent.yaml").unlink()
    with pytest.raises(ConsentError, match="has no consent record"):
        consent.require_live(root, "anna", today=TODAY)
    with pytest.raises(ConsentError, match="'ghost' does not exist"):
        consent.require_live(root, "ghost", today=TODAY)


def test_revoke_from_the_command_line_stops_everything(tmp_path):
    root = _root(tmp_path, "# signed release 17\n" + GOOD.replace("2027-01-01", "2099-01-01"))
    consent.require_live(root, "anna")
    proc = subprocess.run([sys.executable, "-m", "clonetrain", "consent", "--root", str(root), "revoke", "anna"],
                          capture_output=True, text=True)
    assert proc.returncode == 0, proc.stderr
    text = (root / "raw" / "anna" / "consent.yaml").read_text()
    assert text.startswith("# signed release 17") and f"revoked: {dt.date.today()}" in text  # the record is kept
    with pytest.raises(ConsentError, match="revoked"):
        consent.require_live(root, "anna", use="train")
    status = subprocess.run([sys.executable, "-m", "clonetrain", "consent", "--root", str(root), "status", "anna"],
                            capture_output=True, text=True)
    assert status.returncode == 2 and "revoked" in status.stderr and "Traceback" not in status.stderr


def test_a_frozen_copy_of_another_person_is_refused(tmp_path):
    c = consent.require_live(_root(tmp_path), "anna", today=TODAY)
    consent.check_frozen({"person": "A", "expires": "2020-01-01"}, c, "anna", "package")  # the live record decides
    with pytest.raises(ConsentError, match="built under the consent of 'Z'"):
        consent.check_frozen({"person": "Z"}, c, "anna", "package")
