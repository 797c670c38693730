"""Every reliability case of issue 10 (and the ones a demanding tester tries next), on real footage with a tiny
training budget: one clone is trained once (20 s of talk_man_60s, a tiny model, 4 steps) and every case works on a
fresh copy of its data root. Prints `case | expected | observed | pass` per case and writes
bench/results/reliability.json ({"cases", "passed", "lost_files", per-case rows, machine, commit}).

    python scripts/check_reliability.py [--keep DIR]

lost_files: files a studio made (raw takes and consent records, published packages and archives, renders) that
existed before a case and were missing or changed after it, other than the ones the case edits on purpose.
"""

from __future__ import annotations

import argparse
import datetime as dt
import hashlib
import io
import json
import multiprocessing
import os
import shutil
import signal
import sqlite3
import subprocess
import sys
import tarfile
import tempfile
import time
import traceback
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(Path(__file__).resolve().parent))
from bench_common import write_result, commit as commit_of  # noqa: E402

FOOTAGE = ROOT.parent / "shared" / "footage"
CLONE = "anchor"
TINY = ["model.channels=4", "model.max_channels=16", "model.audio_dim=16", "model.expert_dim=8", "train.batch_size=2",
        "train.val_batches=1", "train.val_every=2", "train.checkpoint_every=2", "train.max_steps=4", "logger=none",
        "render.footage_seconds=2"]
CONSENT = ("person: speaker of talk_man_60s (public test clip)\nrecorded_by: public source\ndate: 2026-01-01\n"
           "permitted_uses: [pipeline_testing]\nexpires: {expires}\n")


# ---------------------------------------------------------------------------------------------------- helpers
def ffmpeg(*args: str) -> None:
    subprocess.run(["ffmpeg", "-v", "error", "-y", *args], check=True)


def cli(*args: str, module: str = "clonetrain", timeout: float = 300) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", module, *args], capture_output=True, text=True, timeout=timeout)


def clean_failure(proc: subprocess.CompletedProcess, needle: str) -> tuple[bool, str]:
    """A refusal as the issue wants it: non-zero exit, the message, no traceback."""
    out = proc.stdout + proc.stderr
    line = next((ln for ln in out.splitlines() if needle.lower() in ln.lower()), out.strip().splitlines()[-1:] or [""])
    line = line if isinstance(line, str) else line[0]
    ok = proc.returncode != 0 and needle.lower() in out.lower() and "Traceback" not in out
    return ok, f"exit {proc.returncode}, " + ("traceback, " if "Traceback" in out else "") + line.strip()[-150:]


def cfg_for(root: Path, *overrides: str, clone: str = CLONE):
    from clonetrain.product.nightly import compose

    cfg = compose(root, clone, [*TINY, *overrides])
    stage = next((o.split("=", 1)[1] for o in overrides if o.startswith("stage=")), "all")
    cfg.stage = stage
    return cfg


def run_stage(root: Path, *overrides: str, clone: str = CLONE):
    from clonetrain.core import pipeline

    return pipeline.run(cfg_for(root, *overrides, clone=clone))


def render_cli(root: Path, audio: Path, *overrides: str, clone: str = CLONE) -> subprocess.CompletedProcess:
    return cli("stage=render", f"clone={clone}", f"paths.root={root}", f"audio={audio}", *TINY, *overrides)


def promote(root: Path) -> None:
    """Make v0001 live by hand (the tiny clone is below the promotion floor), so render uses the package."""
    from clonetrain.product import registry

    registry.promote(root, CLONE, "v0001", "promoted by hand for this case")


def consent_path(root: Path, clone: str = CLONE) -> Path:
    return root / "raw" / clone / "consent.yaml"


def studio_files(root: Path) -> dict[str, str]:
    """What a studio made: raw uploads and consent, published packages and archives, renders."""
    out = {}
    for top in ("raw", "clones", "renders"):
        base = root / top
        if not base.is_dir():
            continue
        for p in base.rglob("*"):
            rel = p.relative_to(root).as_posix()
            if p.is_file() and not any(part.startswith(".") for part in p.relative_to(root).parts):
                out[rel] = hashlib.sha256(p.read_bytes()).hexdigest()
    return out


@dataclass
class Case:
    name: str
    expected: str
    fn: Callable[[Path, dict], tuple[bool, str]]
    edits: tuple[str, ...] = ()  # files the case changes on purpose (relative to the root)


# ------------------------------------------------------------------------------------------------------ cases
def tampered_archive_beside_good_folder(root, ctx):
    from clonetrain.product import clone_package

    d = root / "loose"
    good = d / f"{CLONE}-v0001"
    shutil.copytree(root / "clones" / CLONE / "v0001", good)
    before = clone_package.file_table(good)
    archive = d / f"{CLONE}-v0001.tar.gz"
    with tarfile.open(root / "clones" / CLONE / f"{CLONE}-v0001.tar.gz") as src, tarfile.open(archive, "w:gz") as dst:
        for m in src.getmembers():
            data = src.extractfile(m).read() if m.isfile() else None
            if m.name.endswith("model_card.md"):
                data, m.size = data + b"x", len(data) + 1
            dst.addfile(m, io.BytesIO(data) if data is not None else None)
    try:
        clone_package.load(archive)
        return False, "loaded"
    except clone_package.PackageError as err:
        intact = clone_package.file_table(good) == before
        leftovers = list(d.glob(".*"))
        return intact and not leftovers, f"refused ({err.message[-60:]}); good folder intact={intact}, leftovers={len(leftovers)}"


def archive_extraction_is_reused(root, ctx):
    from clonetrain.product import clone_package

    d = root / "loose"
    d.mkdir()
    archive = d / f"{CLONE}-v0001.tar.gz"
    shutil.copy(root / "clones" / CLONE / f"{CLONE}-v0001.tar.gz", archive)
    a = clone_package.load(archive).path
    mtime = (a / clone_package.MODEL).stat().st_mtime_ns
    b = clone_package.load(archive).path
    same = a == b and (b / clone_package.MODEL).stat().st_mtime_ns == mtime
    return same and len(list(d.iterdir())) == 2, f"second load reused {b.name} (untouched={same}); {len(list(d.iterdir()))} entries"


def render_from_archive_leaves_no_copy(root, ctx):
    archive = root / "clones" / CLONE / f"{CLONE}-v0001.tar.gz"
    before = sorted(p.name for p in archive.parent.iterdir())
    proc = render_cli(root, ctx["speech_wav"], f"render.package={archive}")
    after = sorted(p.name for p in archive.parent.iterdir())
    return proc.returncode == 0 and before == after, f"exit {proc.returncode}; clones/{CLONE}/ before {before} after {after}"


def same_stem_renders_both_kept(root, ctx):
    from clonetrain.stages import render
    from clonetrain.core.workspace import Workspace

    outs = [render.run(cfg_for(root, "stage=render", f"audio={ctx[k]}"), Workspace(root, CLONE)) for k in ("speech_mp3", "speech_m4a")]
    first_sha = hashlib.sha256(outs[0].read_bytes()).hexdigest()
    prov = [json.loads(o.with_suffix(".provenance.json").read_text()) for o in outs]
    ok = outs[0] != outs[1] and prov[0]["video_sha256"] == first_sha and prov[0]["audio_sha256"] != prov[1]["audio_sha256"]
    return ok, f"{outs[0].name} + {outs[1].name}; first video and its provenance match={prov[0]['video_sha256'] == first_sha}"


def named_output_not_overwritten(root, ctx):
    out = root / "renders" / "deliverable.mp4"
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_bytes(b"the client's approved cut")
    proc = render_cli(root, ctx["speech_wav"], f"render.out={out}")
    ok, obs = clean_failure(proc, "never overwritten")
    return ok and out.read_bytes() == b"the client's approved cut", obs


def overwrite_when_asked(root, ctx):
    out = root / "scratch" / "again.mp4"
    out.parent.mkdir(parents=True)
    out.write_bytes(b"old")
    proc = render_cli(root, ctx["speech_wav"], f"render.out={out}", "render.overwrite=true")
    return proc.returncode == 0 and out.stat().st_size > 1000, f"exit {proc.returncode}, {out.stat().st_size} bytes"


def _refused_render(root, ctx, edit: Callable[[str], str] | None, needle: str):
    path = consent_path(root)
    if edit is None:
        path.unlink()
    else:
        path.write_text(edit(path.read_text()))
    return clean_failure(render_cli(root, ctx["speech_wav"]), needle)


def consent_expired_after_training(root, ctx):
    return _refused_render(root, ctx, lambda t: t.replace("date: 2026-01-01", "date: 2020-01-01")
                           .replace(f"expires: {ctx['expires']}", "expires: 2021-01-01"), "expired on 2021-01-01")


def consent_deleted_after_training(root, ctx):
    return _refused_render(root, ctx, None, "has no consent record")


def consent_revoked_by_cli(root, ctx):
    proc = cli("consent", "--root", str(root), "revoke", CLONE)
    if proc.returncode:
        return False, proc.stderr.strip()[-150:]
    return clean_failure(render_cli(root, ctx["speech_wav"]), "revoked")


def use_not_permitted(root, ctx):
    return _refused_render(root, ctx, lambda t: t.replace("[pipeline_testing]", "[research]"), "does not permit 'render'")


def named_use_not_permitted(root, ctx):
    return clean_failure(render_cli(root, ctx["speech_wav"], "render.use=advertising"), "does not permit 'advertising'")


def render_false_mapping(root, ctx):
    return _refused_render(root, ctx, lambda t: t.replace("[pipeline_testing]", "{render: false}"), "must be a list of uses")


def permitted_uses_5(root, ctx):
    return _refused_render(root, ctx, lambda t: t.replace("[pipeline_testing]", "5"), "must be a list of uses")


def impossible_date(root, ctx):
    return _refused_render(root, ctx, lambda t: t.replace(f"expires: {ctx['expires']}", "expires: 2030-02-30"),
                           "must be a real date")


def consent_dated_in_future(root, ctx):
    future = dt.date.today() + dt.timedelta(days=10)
    return _refused_render(root, ctx, lambda t: t.replace("date: 2026-01-01", f"date: {future}"), "after today")


def consent_dated_after_expiry(root, ctx):
    return _refused_render(root, ctx, lambda t: t.replace("date: 2026-01-01", "date: 2099-01-01"), "expires before that")


def consent_renewed_renders_without_retraining(root, ctx):
    promote(root)
    path = consent_path(root)
    later = dt.date.today() + dt.timedelta(days=900)
    path.write_text(path.read_text().replace(f"expires: {ctx['expires']}", f"expires: {later}"))
    proc = render_cli(root, ctx["speech_wav"])
    made = list((root / "renders" / CLONE).glob("speech.mp4"))
    return proc.returncode == 0 and bool(made), f"exit {proc.returncode}, rendered from package v0001 whose frozen copy is older"


def expired_consent_stops_training_even_if_up_to_date(root, ctx):
    from clonetrain.core.errors import ConsentError

    path = consent_path(root)
    # The workspace's ingest output is up to date; the consent still expires.
    text = path.read_text()
    path.write_text(text.replace("date: 2026-01-01", "date: 2020-01-01").replace(f"expires: {ctx['expires']}",
                                                                                 "expires: 2021-01-01"))
    try:
        run_stage(root, "stage=train")
        return False, "train ran"
    except ConsentError as err:
        return "expired" in err.message, f"refused: {err.message[-80:]}"


def forged_package_refused(root, ctx):
    from clonetrain.product import clone_package

    forged = root / "forged" / "v0001"
    shutil.copytree(root / "clones" / CLONE / "v0001", forged)
    c = json.loads((forged / clone_package.CONSENT).read_text())
    c["expires"] = "2999-12-31"
    (forged / clone_package.CONSENT).write_text(json.dumps(c))
    m = json.loads((forged / "manifest.json").read_text())
    m["files"], m["consent_sha256"] = clone_package.file_table(forged), clone_package.sha256(forged / clone_package.CONSENT)
    (forged / "manifest.json").write_text(json.dumps(m))
    clone_package.verify(forged)  # every hash matches
    return clean_failure(render_cli(root, ctx["speech_wav"], f"render.package={forged}"), "not the anchor v0001 this studio published")


def forged_live_package_in_place(root, ctx):
    """The same forgery, done to the registered live folder itself."""
    promote(root)
    from clonetrain.product import clone_package

    live = root / "clones" / CLONE / "v0001"
    m = json.loads((live / "manifest.json").read_text())
    (live / "model_card.md").write_text("edited")
    m["files"] = clone_package.file_table(live)
    (live / "manifest.json").write_text(json.dumps(m))
    return clean_failure(render_cli(root, ctx["speech_wav"]), "not the anchor v0001 this studio published")


def other_clones_package(root, ctx):
    other = root / "raw" / "someone_else"
    other.mkdir(parents=True)
    (other / "consent.yaml").write_text(CONSENT.format(expires=ctx["expires"]).replace("talk_man_60s", "another"))
    pkg = root / "clones" / CLONE / "v0001"
    return clean_failure(render_cli(root, ctx["speech_wav"], f"render.package={pkg}", clone="someone_else"),
                         "not 'someone_else'")


def missing_package(root, ctx):
    return clean_failure(render_cli(root, ctx["speech_wav"], f"render.package={root / 'nope.tar.gz'}"), "no package at")


def tampered_package_at_render(root, ctx):
    promote(root)
    motion = root / "clones" / CLONE / "v0001" / "avatar" / "motion.json"
    data = motion.read_bytes()
    motion.write_bytes(data.replace(b"talking", b"idle___", 1))  # same size: only the hash can tell
    return clean_failure(render_cli(root, ctx["speech_wav"]), "motion.json was changed after packaging")


def manifest_without_files(root, ctx):
    promote(root)
    mpath = root / "clones" / CLONE / "v0001" / "manifest.json"
    m = json.loads(mpath.read_text())
    del m["files"]
    mpath.write_text(json.dumps(m))
    return clean_failure(render_cli(root, ctx["speech_wav"]), "no valid 'files' table")


def corrupt_registry(root, ctx):
    (root / "registry.db").write_bytes(b"\0garbage" * 500)
    ok1, obs1 = clean_failure(cli("registry", "--root", str(root), "list"), "cannot be read")
    ok2, obs2 = clean_failure(render_cli(root, ctx["speech_wav"]), "cannot be read")
    return ok1 and ok2, f"list: {obs1[:60]} | render: {obs2[:60]}"


def locked_registry(root, ctx):
    from clonetrain.product import registry

    holder = sqlite3.connect(root / "registry.db", isolation_level=None)
    holder.execute("BEGIN EXCLUSIVE")
    saved = registry.BUSY_TIMEOUT_S
    registry.BUSY_TIMEOUT_S = 0.5
    try:
        registry.promote(root, CLONE, "v0001", "test")
        return False, "promoted through a lock"
    except registry.RegistryError as err:
        return "locked by another process" in err.message, err.message[:120]
    finally:
        registry.BUSY_TIMEOUT_S = saved
        holder.execute("ROLLBACK")
        holder.close()


def _writer(root: str, clone: str) -> None:
    from clonetrain.product import registry

    for i in range(20):
        registry.add_version(Path(root), clone, f"v{i + 1:04d}", {"path": "x"})
        if i % 5 == 4:
            registry.promote(Path(root), clone, f"v{i + 1:04d}", "concurrent")


def concurrent_registry_writers(root, ctx):
    from clonetrain.product import registry

    procs = [multiprocessing.get_context("spawn").Process(target=_writer, args=(str(root), f"w{i}")) for i in range(4)]
    for p in procs:
        p.start()
    for p in procs:
        p.join(120)
    data = registry.read(root)["clones"]
    counts = {c: len(data[c]["versions"]) for c in data if c.startswith("w")}
    ok = all(p.exitcode == 0 for p in procs) and counts == {f"w{i}": 20 for i in range(4)} and \
        all(data[f"w{i}"]["live"] == "v0020" for i in range(4))
    return ok, f"versions per writer {sorted(counts.values())}, exit codes {[p.exitcode for p in procs]}"


def json_registry_migrates_once(root, ctx):
    from clonetrain.product import registry

    data = registry.read(root)
    for suffix in ("", "-wal", "-shm"):
        (root / f"registry.db{suffix}").unlink(missing_ok=True)
    legacy = {"clones": {c: {"live": v["live"], "versions": v["versions"], "history": []} for c, v in data["clones"].items()}}
    (root / "registry.json").write_text(json.dumps(legacy))
    run_stage(root, "stage=package")  # any run: reconcile writes nothing new, the next change migrates
    registry.mark(root, CLONE, "v0001", "candidate", "touch")
    registry.mark(root, CLONE, "v0001", "candidate", "touch again")
    migrations = [h for h in sqlite3.connect(root / "registry.db").execute("SELECT event FROM history WHERE event='migrate'")]
    ok = (root / "registry.json.migrated").is_file() and len(migrations) == 1 and \
        registry.version(root, CLONE, "v0001")["package_sha256"] == data["clones"][CLONE]["versions"]["v0001"]["package_sha256"]
    return ok, f"migrations={len(migrations)}, old file kept as registry.json.migrated={ (root / 'registry.json.migrated').is_file()}"


def crafted_clone_name(root, ctx):
    outside = root.parent
    before = set(outside.iterdir())
    proc = cli("stage=ingest", "clone=a/../../../../../X", f"paths.root={root}")
    ok, obs = clean_failure(proc, "is not allowed")
    created = set(outside.iterdir()) - before
    return ok and not created and not (root / "logs").exists(), obs + f"; created outside: {len(created)}"


def missing_clone_folder(root, ctx):
    return clean_failure(cli("stage=ingest", "clone=ghost", f"paths.root={root}"), "'ghost' does not exist")


def lock_names_holder(root, ctx):
    from clonetrain.core import pipeline
    from clonetrain.core.workspace import Workspace

    with pipeline.clone_lock(Workspace(root, CLONE)):
        proc = cli("stage=report", f"clone={CLONE}", f"paths.root={root}")
    return clean_failure(proc, f"another run (pid {os.getpid()} on")


def floor_keeps_first_version_candidate(root, ctx):
    from clonetrain.product import nightly, registry

    row = nightly.run_nightly(root, TINY, only=[CLONE])["clones"][0]
    ok = row["status"] == "kept" and "below the promotion floor" in row["reason"] and registry.live(root, CLONE) is None
    return ok, f"{row['status']}: {row['reason'][:110]}"


def nan_fails_gate(root, ctx):
    from clonetrain.product import nightly

    live = {"lmd_mouth": 0.05, "mouth_open_corr": 0.5, "psnr_lower": 25.0, "ssim_lower": 0.8, "offset_frames": 0.2}
    ok, why = nightly.gate({**live, "mouth_open_corr": float("nan")}, live, 0.02)
    floor = nightly.floor({"metrics": {"mouth_open_corr": float("nan")}, "targets": {}}, ["*"])
    return not ok and bool(floor), f"gate: {why}; floor: {floor}"


def nightly_clones_honoured(root, ctx):
    from clonetrain.core.workspace import Workspace
    from clonetrain.product import nightly

    before = Workspace(root, CLONE).manifest_path("package").stat().st_mtime_ns
    s = nightly.run_nightly(root, [*TINY, "nightly.clones=[beta]"])
    untouched = Workspace(root, CLONE).manifest_path("package").stat().st_mtime_ns == before
    names = [r["clone"] for r in s["clones"]]
    return names == ["beta"] and untouched, f"processed {names}; {CLONE} untouched={untouched}"


def killed_nightly_leaves_summary(root, ctx):
    proc = subprocess.Popen([sys.executable, "-m", "clonetrain", "nightly", "--root", str(root), *TINY, "force=true"],
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    latest = root / "nightly" / "latest.json"
    deadline = time.time() + 120
    while time.time() < deadline and not latest.is_file():
        time.sleep(0.2)
    time.sleep(2)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    if not latest.is_file():
        return False, "no summary"
    s = json.loads(latest.read_text())
    return s["state"] == "running" and s["in_progress"] == CLONE, f"killed: latest.json state={s['state']}, in_progress={s['in_progress']}"


def nightly_takes_down_after_revocation(root, ctx):
    from clonetrain.product import consent, nightly, registry

    registry.promote(root, CLONE, "v0001", "by hand")
    consent.revoke(root, CLONE)
    row = nightly.run_nightly(root, TINY, only=[CLONE])["clones"][0]
    ok = row["status"] == "failed" and "taken down" in row["reason"] and registry.live(root, CLONE) is None
    return ok, f"{row['status']}: {row['reason'][:100]}"


def kill_after_publish_then_rerun(root, ctx):
    from clonetrain.product import registry

    clones = root / "clones" / CLONE
    for attempt in range(3):
        proc = subprocess.Popen([sys.executable, "-m", "clonetrain", "stage=package", f"clone={CLONE}",
                                 f"paths.root={root}", "force=true", *TINY],
                                stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        killed = False
        while proc.poll() is None:
            if list(clones.glob(f".{CLONE}-v*.tar.gz.tmp")):
                proc.send_signal(signal.SIGKILL)
                killed = True
                break
            time.sleep(0.005)
        proc.wait()
        if killed:
            break
    if not killed:
        return False, "the publish window was never caught"
    orphan = sorted(p.name for p in clones.iterdir() if p.name.startswith("v") and p.name not in
                    registry.read(root)["clones"][CLONE]["versions"])
    tmp_left = [p.name for p in clones.glob(".*")]
    run_stage(root, "stage=package")
    v = registry.read(root)["clones"][CLONE]["versions"]
    adopted = [o for o in orphan if v.get(o, {}).get("status") == "candidate" and "adopted" in v[o].get("reason", "")]
    left = [p.name for p in clones.glob(".*")]
    return bool(orphan) and adopted == orphan and not left, \
        f"killed with {orphan} unregistered + {tmp_left}; rerun adopted {adopted}, leftovers {left}"


def stale_extraction_removed(root, ctx):
    scratch = root / "clones" / CLONE / f".{CLONE}-v0001.extracting-k9"
    (scratch / "x").mkdir(parents=True)
    os.utime(scratch, (1, 1))
    run_stage(root, "stage=report")
    return not scratch.exists(), f"leftover removed={not scratch.exists()}"


def refused_archive_leaves_nothing(root, ctx):
    from clonetrain.product import clone_package

    evil = root / "loose" / "evil.tar.gz"
    evil.parent.mkdir()
    with tarfile.open(evil, "w:gz") as tar:
        info = tarfile.TarInfo("../../outside.txt")
        info.size = 5
        tar.addfile(info, io.BytesIO(b"pwned"))
    try:
        clone_package.load(evil)
        return False, "loaded"
    except clone_package.PackageError:
        left = list(evil.parent.iterdir())
        return left == [evil] and not (root / "outside.txt").exists(), f"refused; folder holds {[p.name for p in left]}"


def killed_render_leaves_no_deliverable(root, ctx):
    out_dir = root / "renders" / CLONE
    proc = subprocess.Popen([sys.executable, "-m", "clonetrain", "stage=render", f"clone={CLONE}", f"paths.root={root}",
                             f"audio={ctx['long_wav']}", *TINY], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    while proc.poll() is None and not list(out_dir.glob(".*.rendering.mp4")):
        time.sleep(0.05)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    finals = [p.name for p in out_dir.glob("*") if not p.name.startswith(".")] if out_dir.is_dir() else []
    temps = [p.name for p in out_dir.glob(".*")] if out_dir.is_dir() else []
    run_stage(root, "stage=report")  # the next run on the clone removes the dead render's temporary file
    left = [p.name for p in out_dir.glob(".*")] if out_dir.is_dir() else []
    return not finals and bool(temps) and not left, \
        f"after kill -9 mid-render: deliverables {finals}, temp {len(temps)} -> {len(left)} after the next run"


def stem_wav_upper_case(root, ctx):
    from clonetrain.contract import files

    raw = root / "raw" / "phone"
    raw.mkdir(parents=True)
    shutil.copy(FOOTAGE / "split_woman_no_audio_10s.mp4", raw / "clip.mp4")
    shutil.copy(FOOTAGE / "split_woman_10s.wav", raw / "clip.WAV")
    (raw / "consent.yaml").write_text(CONSENT.format(expires=ctx["expires"]))
    try:
        run_stage(root, "stage=ingest", "ingest.min_duration_s=5", clone="phone")
    except Exception as err:  # noqa: BLE001 - reported as the observation
        return False, f"{type(err).__name__}: {err}"[:150]
    take = json.loads(files.of_clone(root, "phone", "ingest", "takes").read_text())[0]
    return take["status"] == "ok" and take["sound_from"] == "clip.WAV", f"take {take['status']}, sound from {take.get('sound_from')}"


def one_take_failure_fix(root, ctx):
    raw = root / "raw" / "one"
    raw.mkdir(parents=True)
    shutil.copy(FOOTAGE / "bad_no_audio_3s.mp4", raw / "x.mp4")
    (raw / "consent.yaml").write_text(CONSENT.format(expires=ctx["expires"]))
    proc = cli("stage=ingest", "clone=one", f"paths.root={root}")
    return clean_failure(proc, "beside it as x.wav")


def second_nightly_exits(root, ctx):
    from clonetrain.product import nightly

    with nightly.nightly_lock(root):
        proc = cli("nightly", "--root", str(root))
    ok = proc.returncode == 3 and "another nightly run is in progress" in proc.stderr and "Traceback" not in proc.stderr
    return ok, f"exit {proc.returncode}: {proc.stderr.strip()[:100]}"


def registry_deleted(root, ctx):
    from clonetrain.product import registry

    for suffix in ("", "-wal", "-shm"):
        (root / f"registry.db{suffix}").unlink(missing_ok=True)
    run_stage(root, "stage=report")
    v = registry.version(root, CLONE, "v0001")
    ok = v is not None and v["status"] == "candidate" and "adopted" in v.get("reason", "")
    return ok, f"after the next run: v0001 {v['status'] if v else 'unknown'} ({(v or {}).get('reason', '')[:60]})"


def registered_archive_deleted(root, ctx):
    from clonetrain.product import clone_package

    archive = root / "clones" / CLONE / f"{CLONE}-v0001.tar.gz"
    archive.unlink()
    run_stage(root, "stage=report")
    with clone_package.opened(archive) as p:
        ok = p.version == "v0001"
    return ok, f"archive rebuilt by the next run and verifies={ok}"


def truncated_archive(root, ctx):
    from clonetrain.product import clone_package

    d = root / "loose"
    d.mkdir()
    half = d / f"{CLONE}-v0001.tar.gz"
    data = (root / "clones" / CLONE / f"{CLONE}-v0001.tar.gz").read_bytes()
    half.write_bytes(data[: len(data) // 2])
    try:
        clone_package.load(half)
        return False, "loaded"
    except clone_package.PackageError as err:
        left = sorted(p.name for p in d.iterdir())
        return left == [half.name], f"refused ({err.message[-50:]}); folder holds {left}"


def yaml_code_tag(root, ctx):
    marker = root / "pwned"
    path = consent_path(root)
    path.write_text(path.read_text() + f"document: !!python/object/apply:os.system ['touch {marker}']\n")
    ok, obs = clean_failure(render_cli(root, ctx["speech_wav"]), "not valid YAML")
    return ok and not marker.exists(), obs + f"; code ran={marker.exists()}"


def live_folder_deleted(root, ctx):
    promote(root)
    shutil.rmtree(root / "clones" / CLONE / "v0001")
    return clean_failure(render_cli(root, ctx["speech_wav"]), "no package at")


def concurrent_renders_same_stem(root, ctx):
    procs = [subprocess.Popen([sys.executable, "-m", "clonetrain", "stage=render", f"clone={CLONE}",
                               f"paths.root={root}", f"audio={ctx['speech_wav']}", *TINY],
                              stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL) for _ in range(2)]
    codes = [p.wait() for p in procs]
    out = root / "renders" / CLONE
    names = sorted(p.name for p in out.glob("*.mp4") if not p.name.startswith("."))
    provs = sorted(p.name for p in out.glob("*.provenance.json"))
    return codes == [0, 0] and names == ["speech-2.mp4", "speech.mp4"] and len(provs) == 2, \
        f"exit codes {codes}; deliverables {names}; provenance files {len(provs)}"


CASES = [
    Case("tampered archive beside a good folder", "refused; the good folder untouched", tampered_archive_beside_good_folder),
    Case("archive loaded twice", "the verified extraction is reused", archive_extraction_is_reused),
    Case("render from an archive", "no extracted copy left behind", render_from_archive_leaves_no_copy),
    Case("speech.mp3 then speech.m4a", "two deliverables, the first untouched", same_stem_renders_both_kept),
    Case("render.out that exists", "refused, file untouched", named_output_not_overwritten),
    Case("render.overwrite=true", "replaced as asked", overwrite_when_asked),
    Case("consent expired after training", "render refused", consent_expired_after_training, ("raw/anchor/consent.yaml",)),
    Case("consent deleted after training", "render refused", consent_deleted_after_training, ("raw/anchor/consent.yaml",)),
    Case("consent revoked (CLI)", "render refused", consent_revoked_by_cli, ("raw/anchor/consent.yaml",)),
    Case("permitted_uses [research]", "render refused", use_not_permitted, ("raw/anchor/consent.yaml",)),
    Case("render.use=advertising, not permitted", "render refused", named_use_not_permitted),
    Case("permitted_uses {render: false}", "refused, clear error", render_false_mapping, ("raw/anchor/consent.yaml",)),
    Case("permitted_uses: 5", "refused, clear error", permitted_uses_5, ("raw/anchor/consent.yaml",)),
    Case("expires: 2030-02-30", "refused, clear error", impossible_date, ("raw/anchor/consent.yaml",)),
    Case("consent dated in the future", "refused", consent_dated_in_future, ("raw/anchor/consent.yaml",)),
    Case("consent dated after its expiry", "refused", consent_dated_after_expiry, ("raw/anchor/consent.yaml",)),
    Case("consent renewed after packaging", "renders, no retraining", consent_renewed_renders_without_retraining,
         ("raw/anchor/consent.yaml",)),
    Case("expired consent, stages up to date", "training refused", expired_consent_stops_training_even_if_up_to_date,
         ("raw/anchor/consent.yaml",)),
    Case("forged package (consent extended, hashes recomputed)", "refused by the registry hash", forged_package_refused),
    Case("live package forged in place", "refused by the registry hash", forged_live_package_in_place,
         ("clones/anchor/v0001/model_card.md", "clones/anchor/v0001/manifest.json")),
    Case("another clone's package", "refused", other_clones_package),
    Case("missing package at render", "clear error, no traceback", missing_package),
    Case("tampered package at render", "clear error, no traceback", tampered_package_at_render,
         ("clones/anchor/v0001/avatar/motion.json",)),
    Case("manifest without files", "clear error, no traceback", manifest_without_files, ("clones/anchor/v0001/manifest.json",)),
    Case("corrupt registry", "clear error (list and render)", corrupt_registry),
    Case("locked registry", "clear error", locked_registry),
    Case("4 concurrent registry writers", "no entry lost", concurrent_registry_writers),
    Case("registry.json from before", "migrated once, old file kept", json_registry_migrates_once),
    Case("clone=a/../../../../../X", "refused before anything is written", crafted_clone_name),
    Case("clone folder missing", "reported as missing, not as consent", missing_clone_folder),
    Case("second run on a locked clone", "error names the holder", lock_names_holder),
    Case("first version below the floor", "stays a candidate, says why", floor_keeps_first_version_candidate),
    Case("NaN metrics", "fail the gate and the floor", nan_fails_gate),
    Case("nightly.clones=[beta]", "only beta processed", nightly_clones_honoured),
    Case("kill -9 during nightly", "a summary says how far it got", killed_nightly_leaves_summary),
    Case("consent revoked, version live", "nightly takes it down", nightly_takes_down_after_revocation,
         ("raw/anchor/consent.yaml",)),
    Case("kill -9 just after publishing", "rerun adopts the version, cleans up", kill_after_publish_then_rerun),
    Case("stale .extracting folder", "removed by the next run", stale_extraction_removed),
    Case("archive escaping its folder", "refused, nothing left", refused_archive_leaves_nothing),
    Case("kill -9 during render", "no half deliverable", killed_render_leaves_no_deliverable),
    Case("STEM.WAV upper case", "used as the take's sound", stem_wav_upper_case),
    Case("one-take failure", "that take's own fix", one_take_failure_fix),
    Case("second nightly while one runs", "exits at once", second_nightly_exits),
    Case("registry.db deleted", "the next run re-registers the package", registry_deleted),
    Case("registered archive deleted", "rebuilt by the next run", registered_archive_deleted,
         ("clones/anchor/anchor-v0001.tar.gz",)),
    Case("half-downloaded archive", "refused, nothing left", truncated_archive),
    Case("!!python/object in consent.yaml", "refused, nothing run", yaml_code_tag, ("raw/anchor/consent.yaml",)),
    Case("live package folder deleted", "clear error at render", live_folder_deleted, ("clones/anchor/v0001/",)),
    Case("two renders of one stem at once", "two deliverables, none lost", concurrent_renders_same_stem),
]


# ------------------------------------------------------------------------------------------------------- main
def build_base(work: Path) -> tuple[Path, dict]:
    """One tiny clone, trained, evaluated and packaged once (v0001, a candidate); speech files for the renders."""
    from clonetrain.core import config

    config.register()
    base = work / "base"
    saved = work / "base.json"
    if saved.is_file():  # --keep: a base built by an earlier run in the same folder
        ctx = json.loads(saved.read_text())
        return base, {k: Path(v) if k.endswith(("_wav", "_mp3", "_m4a")) else v for k, v in ctx.items()}
    raw = base / "raw" / CLONE
    raw.mkdir(parents=True)
    ffmpeg("-i", str(FOOTAGE / "talk_man_60s.mp4"), "-t", "20", "-c:v", "libx264", "-preset", "veryfast", "-crf", "18",
           "-c:a", "aac", str(raw / "take1.mp4"))
    expires = dt.date.today() + dt.timedelta(days=30)
    (raw / "consent.yaml").write_text(CONSENT.format(expires=expires))
    t0 = time.perf_counter()
    run_stage(base, "stage=all")
    ctx = {"expires": expires.isoformat(), "train_seconds": round(time.perf_counter() - t0, 1)}
    speech = work / "speech"
    speech.mkdir()
    src = str(FOOTAGE / "driving_speech_en_60s.wav")
    for name, secs in (("speech.wav", 1), ("speech.mp3", 1), ("speech.m4a", 1), ("long.wav", 30)):
        ffmpeg("-i", src, "-t", str(secs), str(speech / name))
    ctx.update(speech_wav=speech / "speech.wav", speech_mp3=speech / "speech.mp3", speech_m4a=speech / "speech.m4a",
               long_wav=speech / "long.wav")
    saved.write_text(json.dumps(ctx, default=str))
    return base, ctx


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--keep", type=Path, help="work in this folder and keep it (default: a temporary one, removed)")
    ap.add_argument("-k", default="", help="only the cases whose name contains this")
    args = ap.parse_args()
    os.environ.setdefault("WANDB_MODE", "offline")
    work = Path(args.keep or tempfile.mkdtemp(prefix="clonetrain-reliability-")).resolve()
    work.mkdir(parents=True, exist_ok=True)
    t0 = time.perf_counter()
    base, ctx = build_base(work)
    rows, lost_total = [], 0
    for i, case in enumerate(c for c in CASES if args.k in c.name):
        root = work / f"case{i:02d}" / "data"
        shutil.rmtree(root.parent, ignore_errors=True)
        shutil.copytree(base, root, symlinks=True)
        before = studio_files(root)
        started = time.perf_counter()
        try:
            ok, observed = case.fn(root, ctx)
        except Exception as err:  # noqa: BLE001 - a crash is a failed case, with its traceback's last line
            ok, observed = False, f"crash: {type(err).__name__}: {err}"[:200]
            traceback.print_exc()
        after = studio_files(root)
        edited = lambda k: any(k == e or (e.endswith("/") and k.startswith(e)) for e in case.edits)  # noqa: E731
        lost = sorted(k for k, h in before.items() if not edited(k) and after.get(k) != h)
        lost_total += len(lost)
        if lost:
            ok, observed = False, observed + f"; LOST {lost[:3]}"
        rows.append({"case": case.name, "expected": case.expected, "observed": observed, "pass": bool(ok),
                     "lost_files": lost, "seconds": round(time.perf_counter() - started, 1)})
        print(f"{case.name} | {case.expected} | {observed} | {'PASS' if ok else 'FAIL'}", flush=True)
        if not args.keep:
            shutil.rmtree(root.parent, ignore_errors=True)
    commit = commit_of()
    dirty = bool(subprocess.run(["git", "status", "--porcelain", "--", "src", "scripts"], cwd=ROOT, capture_output=True,
                                text=True).stdout.strip())
    passed = sum(r["pass"] for r in rows)
    result = {"cases": len(rows), "passed": passed, "lost_files": lost_total, "commit": commit, "dirty": dirty,
              "base_clone": {"footage": "talk_man_60s.mp4, first 20 s", "overrides": TINY,
                             "stage_all_seconds": ctx["train_seconds"]},
              "seconds": round(time.perf_counter() - t0, 1),
              "targets": {"all_cases_pass": {"value": passed, "goal": len(rows), "met": passed == len(rows)},
                          "no_file_lost": {"value": lost_total, "goal": 0, "met": lost_total == 0}},
              "results": rows}
    if not args.k:
        write_result(ROOT / "bench" / "results" / "reliability.json", {**result, "results": rows})
    else:
        print(json.dumps({k: v for k, v in result.items() if k != "results"}, indent=2))
    if not args.keep:
        shutil.rmtree(work, ignore_errors=True)
    return 0 if passed == len(rows) and lost_total == 0 else 1


if __name__ == "__main__":
    sys.exit(main())
