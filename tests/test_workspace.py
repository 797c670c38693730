import datetime as dt
import json

import pytest

from clonetrain.product import consent
from clonetrain.core.errors import CloneNameError, ConsentError
from clonetrain.core.workspace import Workspace, write_json_atomic


@pytest.mark.parametrize("bad", ["../x", "/etc", "a/b", "", "..", ".hidden", "x/../../y", "a" * 65, "a..b"])
def test_clone_ids_that_could_escape_the_root_are_refused(tmp_path, bad):
    with pytest.raises(CloneNameError):
        Workspace(tmp_path, bad)


def test_valid_clone_id_lives_under_the_root(tmp_path):
    ws = Workspace(tmp_path, "anna_01")
    assert ws.raw_dir == tmp_path.resolve() / "raw" / "anna_01"
    assert ws.stage_dir("faces") == tmp_path.resolve() / "work" / "anna_01" / "faces"


def test_atomic_write_keeps_the_old_file_when_writing_fails(tmp_path):
    target = tmp_path / "m.json"
    write_json_atomic(target, {"v": 1})
    with pytest.raises(TypeError):
        write_json_atomic(target, {"v": object()})
    assert json.loads(target.read_text()) == {"v": 1}
    assert [p.name for p in tmp_path.iterdir()] == ["m.json"]


def test_commit_stage_swaps_whole_folders_and_recovers_after_a_kill(tmp_path):
    ws = Workspace(tmp_path, "c")
    out = ws.begin_stage("s")
    (out / "a.txt").write_text("one")
    ws.commit_stage("s")
    # A run killed between commit_stage's two renames leaves only s.old: recover() puts it back.
    (ws.work_dir / "s").rename(ws.work_dir / "s.old")
    ws.recover("s")
    assert (ws.stage_dir("s") / "a.txt").read_text() == "one"
    # A leftover build folder from a killed run is discarded, the committed output untouched.
    tmp = ws.begin_stage("s")
    (tmp / "half.txt").write_text("half")
    out = ws.begin_stage("s")
    assert list(out.iterdir()) == []
    assert (ws.stage_dir("s") / "a.txt").read_text() == "one"


def _write(raw, text):
    raw.mkdir(parents=True, exist_ok=True)
    (raw / "consent.yaml").write_text(text)


def test_missing_consent_is_refused_with_a_template(tmp_path):
    with pytest.raises(ConsentError) as err:
        consent.load(tmp_path, "anna")
    assert "no consent record" in str(err.value) and "permitted_uses:" in str(err.value)


def test_expired_consent_is_refused(tmp_path):
    _write(tmp_path, "person: A\nrecorded_by: B\ndate: 2020-01-01\npermitted_uses: [render]\nexpires: 2021-01-01\n")
    with pytest.raises(ConsentError, match="expired on 2021-01-01"):
        consent.load(tmp_path, "anna")


def test_incomplete_or_malformed_consent_is_refused(tmp_path):
    _write(tmp_path, "person: A\ndate: 2020-01-01\nexpires: 2099-01-01\n")
    with pytest.raises(ConsentError, match="lacks recorded_by, permitted_uses"):
        consent.load(tmp_path, "anna")
    _write(tmp_path, "person: A\nrecorded_by: B\ndate: someday\npermitted_uses: [render]\nexpires: 2099-01-01\n")
    with pytest.raises(ConsentError, match="'date' must be a real date"):
        consent.load(tmp_path, "anna")


def test_valid_consent_loads(tmp_path):
    _write(tmp_path, "person: A\nrecorded_by: B\ndate: 2026-01-01\npermitted_uses: live\nexpires: 2099-01-01\n")
    c = consent.load(tmp_path, "anna", today=dt.date(2026, 6, 1))
    assert c.permitted_uses == ("live",) and c.expires == dt.date(2099, 1, 1)
