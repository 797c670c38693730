"""What the page shows of a clone, read from where the pipeline keeps it: raw/ (takes, consent.yaml), the stage
outputs (takes.json, report.json, metrics.json, voice.json), the registry, nightly/latest.json, renders/.
Nothing here is stored twice."""

from __future__ import annotations

import datetime as dt
import json
from pathlib import Path

from clonetrain.product import consent, corpus, nightly, registry
from clonetrain.evaluation import verdict
from clonetrain.contract import files
from clonetrain.core.errors import ClonetrainError
from clonetrain.studio import uploads
from clonetrain.core.workspace import Workspace, validate_clone_id

# The clone's files the page may show, by a fixed name: (stage, file, media type). Nothing else is served.
LOOK = {  # what the page shows: stage, its file's name in the contract (contract.files), media type
    "report": ("report", "page", "text/html"),
    "footage_check": ("report", "footage_check", "video/mp4"),
    "heldout": ("evaluate", "heldout", "video/mp4"),
    "preview": ("train", "preview", "video/mp4"),
    "mouths": ("evaluate", "mouths", "image/png"),
}


def _json(path: Path) -> dict | list | None:
    try:
        return json.loads(path.read_text()) if path.is_file() else None
    except (OSError, json.JSONDecodeError):
        return None


def clone_ids(root: Path) -> list[str]:
    """Every clone with a raw/ folder or a registry entry (ids that are not valid, and the corpus's pretraining
    clips, are not shown)."""
    raw = root / "raw"
    names = {p.name for p in raw.iterdir() if p.is_dir() and not corpus.is_corpus_clip(p)} if raw.is_dir() else set()
    try:
        names |= set(registry.read(root)["clones"])
    except ClonetrainError:
        pass
    ok = []
    for n in sorted(names):
        try:
            ok.append(validate_clone_id(n))
        except ClonetrainError:
            continue
    return ok


def consent_state(root: Path, clone: str) -> dict:
    """{state: in force | revoked | expired | not yet valid | missing | invalid, text, record (the fields)}."""
    path = Workspace(root, clone).raw_dir / consent.FILENAME
    try:
        record = consent.parse(path, clone)
    except ClonetrainError as err:
        if not path.is_file():
            return {"state": "missing", "text": "no consent recorded yet: fill in the form with the signed release",
                    "fix": None, "record": None}
        return {"state": "invalid", "text": err.message, "fix": err.fix, "record": None}
    today = dt.date.today()
    try:
        consent.in_force(record, path, clone, "train", today)
        state, text = "in force", f"until {record.expires}"
    except ClonetrainError as err:
        state = ("revoked" if record.is_revoked(today) else "expired" if record.expired(today)
                 else "not yet valid" if record.date > today else "invalid")
        text = err.message
    return {"state": state, "text": text, "fix": None, "record": record,
            "renders": record.permits("render"), "expires": record.expires.isoformat()}


def nightly_rows(root: Path) -> dict[str, dict]:
    latest = _json(root / "nightly" / "latest.json") or {}
    return {r["clone"]: {**r, "night": latest.get("started")} for r in latest.get("clones", []) if "clone" in r}


def clone_verdict(ws: Workspace, reg_clone: dict | None) -> dict | None:
    """The verdict to show: the live version's, else the latest evaluation's, else the footage's (report)."""
    if reg_clone and reg_clone.get("live"):
        v = (reg_clone["versions"].get(reg_clone["live"]) or {}).get("verdict")
        if v:
            return {"level": v["level"], "short": verdict.short(v), "headline": None, "from": f"live {reg_clone['live']}"}
    evaluated = verdict.read(files.folder(ws, "evaluate"))
    if evaluated:
        return {"level": evaluated["level"], "short": verdict.short(evaluated), "headline": verdict.text(evaluated),
                "from": "latest training"}
    report = _json(files.path(ws, "report", "report", required=False))
    if report:
        return {"level": report["level"], "short": f"footage {report['level']}", "headline": report["verdict"],
                "from": "footage check"}
    return None


def summaries(root: Path) -> list[dict]:
    """One row per clone for the list: live version, verdict, metrics, consent, last nightly."""
    try:
        reg = registry.read(root)["clones"]
    except ClonetrainError:
        reg = {}
    nights = nightly_rows(root)
    rows = []
    for clone in clone_ids(root):
        ws = Workspace(root, clone)
        rc = reg.get(clone)
        live = rc["live"] if rc else None
        metrics = ((rc["versions"].get(live) or {}).get("metrics") or {}) if live else {}
        rows.append({"clone": clone, "live": live, "versions": len(rc["versions"]) if rc else 0,
                     "verdict": clone_verdict(ws, rc), "metrics": metrics, "consent": consent_state(root, clone),
                     "nightly": nights.get(clone)})
    return rows


def takes(root: Path, studio_dir: Path, clone: str) -> list[dict]:
    """Every file uploaded to the clone, with the name it was sent under and ingest's verdict on it (the same
    status, reason and fix as the report's table) once ingest has read it."""
    ws = Workspace(root, clone)
    index = uploads.read_index(studio_dir, clone)["files"]
    judged = {t["file"]: t for t in (_json(files.path(ws, "ingest", "takes", required=False)) or [])}
    report_rows = {r[0]: r for r in (_json(files.path(ws, "report", "report", required=False)) or {}).get("takes", [])}
    out = []
    uploaded = sorted(p for p in ws.raw_dir.iterdir() if p.is_file() and p.name != consent.FILENAME
                      and not p.name.startswith((".", "consent-document"))) if ws.raw_dir.is_dir() else []
    for p in uploaded:
        meta = index.get(p.name, {})
        row = {"file": p.name, "name": meta.get("name", p.name), "kind": meta.get("kind", "sound" if p.suffix == ".wav"
                                                                                  else "video"),
               "duration_s": meta.get("duration_s"), "size_mb": round(p.stat().st_size / 2**20, 1), "by": meta.get("by"),
               "has_audio": meta.get("has_audio"), "verdict": None, "reason": None, "fix": None}
        if (t := judged.get(p.name)) is not None:
            row["verdict"] = t["status"]
            row["reason"] = t.get("reason") or (f"{t['speech_s']:.1f} s of speech in {t['duration_s']:.1f} s"
                                                + ("" if t.get("lipsync", True) else ": too little speech for lip-sync"))
            row["fix"] = t.get("fix")
            if (r := report_rows.get(p.name)) is not None and t["status"] == "ok":
                row["verdict"] = r[1]  # ok, or what the later stages found (no face, little speech)
        elif row["kind"] == "video" and meta.get("has_audio") is False:
            row["reason"] = f"no sound: upload its sound as {Path(row['name']).stem}.wav"
        out.append(row)
    return out


def versions(root: Path, clone: str, cfg_nightly) -> list[dict]:
    """The clone's versions, newest first, each with what the promotion gate says about it."""
    try:
        rc = registry.read(root)["clones"].get(clone)
    except ClonetrainError:
        return []
    if not rc:
        return []
    live = (rc["live"], rc["versions"][rc["live"]]) if rc["live"] in rc["versions"] else None
    out = []
    for ver, entry in sorted(rc["versions"].items(), reverse=True):
        status, reason, _ = nightly.decide(ver, entry, live, cfg_nightly)
        gate_ok = status == "promoted"
        out.append({"version": ver, "status": entry["status"], "created": entry["created"],
                    "reason": entry.get("reason"), "verdict": verdict.short(entry.get("verdict")),
                    "level": (entry.get("verdict") or {}).get("level"),
                    "metrics": entry.get("metrics") or {}, "gate": reason, "gate_ok": gate_ok,
                    "live": ver == rc["live"]})
    return out


def looks(root: Path, clone: str) -> dict[str, bool]:
    ws = Workspace(root, clone)
    return {name: files.exists(ws, stage, file) for name, (stage, file, _) in LOOK.items()}


def look_path(root: Path, clone: str, name: str) -> tuple[Path, str] | None:
    if name not in LOOK:
        return None
    stage, file, media = LOOK[name]
    path = files.path(Workspace(root, clone), stage, file, required=False)
    return (path, media) if path.is_file() else None


def renders(root: Path, clone: str) -> list[dict]:
    """The clone's rendered videos, newest first, with their provenance records."""
    folder = Path(root) / "renders" / clone
    if not folder.is_dir():
        return []
    out = []
    for p in sorted(folder.glob("*.mp4"), key=lambda p: p.stat().st_mtime, reverse=True):
        if p.name.startswith("."):
            continue  # a render still being written
        prov = p.with_suffix(".provenance.json")
        out.append({"name": p.name, "size_mb": round(p.stat().st_size / 2**20, 2),
                    "provenance": prov.name if prov.is_file() else None,
                    "created": dt.datetime.fromtimestamp(p.stat().st_mtime, dt.timezone.utc).isoformat(timespec="seconds")})
    return out


def render_file(root: Path, clone: str, name: str) -> Path | None:
    """A render or its provenance, found by looking the name up in the listing (never joined onto a path)."""
    for r in renders(root, clone):
        if name == r["name"]:
            return Path(root) / "renders" / clone / r["name"]
        if r["provenance"] and name == r["provenance"]:
            return Path(root) / "renders" / clone / r["provenance"]
    return None


def voice_available(root: Path, clone: str) -> dict:
    v = _json(files.path(Workspace(root, clone), "voice", "record", required=False)) or {}
    return {"available": bool(v.get("available")), "reason": v.get("reason")}
