"""Long work (checking footage, training, rendering) as `python -m clonetrain ...` in a subprocess: the command
line tool stays the one source of truth, and the page reads what it writes.

Each job has a record (<root>/studio/jobs/<id>.json, written atomically) and a log (<id>.log: the command's stdout
and stderr). Progress is read from that log: the pipeline logs "── stage: started ──", "── stage: done in ..",
"stage: up to date", a progress line every `progress_every_s` (training's says its step and time budget) and, on
failure, the error with its fix (clonetrain.core.errors). One job per clone at a time.
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import signal
import subprocess
import sys
import threading
import time
import uuid
from datetime import datetime, timezone
from pathlib import Path

from clonetrain.core import pipeline
from clonetrain.core.errors import ClonetrainError
from clonetrain.product.reconcile import pid_alive
from clonetrain.core.workspace import write_json_atomic

# What each kind of job runs: a stage group of the pipeline, or the render action.
KINDS = {"check": "preprocess", "train": "all", "render": "render"}
# Seconds between progress lines in a job's log: the page polls every second or so.
PROGRESS_EVERY_S = 2

_STARTED = re.compile(r"── (\w+): started ──")
_DONE = re.compile(r"── (\w+): done in ([\d.]+) s ──")
_SKIPPED = re.compile(r"\] - (\w+): up to date")
_PROGRESS = re.compile(r"\[clonetrain\.core\.progress\]\[INFO\] - (.*)")
_ERROR = re.compile(r"\[ERROR\] - (.*)")
_RENDERED = re.compile(r"rendered (\S+\.mp4): ")


class JobError(ClonetrainError):
    """A job that cannot start (another one runs on the clone)."""


def _now() -> str:
    return datetime.now(timezone.utc).isoformat(timespec="seconds")


def stages_of(kind: str) -> list[str]:
    target = KINDS[kind]
    return [target] if target in pipeline.ACTIONS else pipeline.resolve_stages(target)


def _alive(pid: int | None) -> bool:
    return bool(pid) and pid_alive(pid)


def override(key: str, value: str) -> str:
    """key='value' for Hydra: quoted, so the value stays the string it is (unquoted, clone=0.10 would be the
    float 0.1, clone=1e5 100000.0 and clone=null None; a job would run on another clone)."""
    if any(ch in value for ch in "'\\$"):  # never in a clone id or a name the studio chooses
        raise JobError(f"{key}={value!r} cannot be passed to a job", "use letters, digits, '_', '-', '.' and '/'")
    return f"{key}='{value}'"


def _runs(pid: int | None, command: list[str]) -> bool:
    """Whether process `pid` is alive and still runs `command` (Linux: /proc/<pid>/cmdline)."""
    if not _alive(pid) or not command:
        return False
    try:
        return Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0")[:-1] == [c.encode() for c in command]
    except OSError:
        return False


def parse_log(text: str, kind: str, returncode: int | None) -> dict:
    """What a job's log says: each stage's state, the latest progress line, the error and its fix."""
    states = {s: "waiting" for s in stages_of(kind)}
    seconds: dict[str, float] = {}
    progress, error, fix, output = None, None, None, None
    lines = text.splitlines()
    for i, line in enumerate(lines):
        if m := _STARTED.search(line):
            states[m.group(1)] = "running"
            progress = None
        elif m := _DONE.search(line):
            states[m.group(1)] = "done"
            seconds[m.group(1)] = float(m.group(2))
        elif m := _SKIPPED.search(line):
            states[m.group(1)] = "up to date"
        elif m := _PROGRESS.search(line):
            progress = m.group(1)
        elif m := _ERROR.search(line):
            error = m.group(1)
            fix = next((ln.strip()[len("fix:"):].strip() for ln in lines[i + 1:i + 3] if ln.strip().startswith("fix:")),
                       None)
        if m := _RENDERED.search(line):
            output = m.group(1)
    if kind == "render" and returncode == 0:
        states["render"] = "done"
    elif kind == "render" and returncode is None:
        states["render"] = "running"
    if returncode not in (None, 0):
        for s, st in states.items():
            if st == "running":
                states[s] = "failed"
        if error is None:
            # Not a ClonetrainError: a crash. Its last lines are the most a page can say.
            error = "the job crashed: " + " / ".join(ln.strip() for ln in lines[-6:] if ln.strip())
            fix = "look at the job's log; if it repeats, report it with the log"
    return {"stages": states, "seconds": seconds, "progress": progress, "error": error, "fix": fix,
            "output": output}


class Jobs:
    """Starts jobs and answers what they are doing. Safe to call from several request threads."""

    def __init__(self, root: Path, studio_dir: Path, overrides: tuple[str, ...]):
        self.root, self.dir, self.overrides = root, studio_dir / "jobs", overrides
        self.tmp = studio_dir / "tmp"
        self.dir.mkdir(parents=True, exist_ok=True)
        self.tmp.mkdir(parents=True, exist_ok=True)
        self._lock = threading.Lock()
        self._procs: dict[str, subprocess.Popen] = {}

    def _record_path(self, job_id: str) -> Path:
        if not re.fullmatch(r"[0-9a-f]{32}", job_id):
            raise JobError(f"no job {job_id!r}")
        return self.dir / f"{job_id}.json"

    def command(self, kind: str, clone: str, extra: list[str]) -> list[str]:
        overrides = list(self.overrides)
        if not any(o.startswith("progress_every_s=") for o in overrides):
            overrides.append(f"progress_every_s={PROGRESS_EVERY_S}")
        # The data root reaches the job as $CLONETRAIN_DATA (see start), not as an override: a path may hold what
        # Hydra's override grammar reads otherwise (a comma makes a sweep).
        return [sys.executable, "-m", "clonetrain", f"stage={KINDS[kind]}", override("clone", clone),
                *overrides, *extra]

    def start(self, kind: str, clone: str, user: str, extra: list[str] | None = None) -> dict:
        with self._lock:
            if (busy := self.running(clone)) is not None:
                raise JobError(f"clone {clone!r} is busy: {busy['kind']} started by {busy['user']} at {busy['started']}",
                               "wait for it to finish (its progress is on the clone's page)")
            job_id = uuid.uuid4().hex
            cmd = self.command(kind, clone, extra or [])
            log_path = self.dir / f"{job_id}.log"
            # Temporary files of the job stay under the data root; the log is unbuffered, so the page sees it live.
            env = {**os.environ, "CLONETRAIN_DATA": str(self.root), "TMPDIR": str(self.tmp), "PYTHONUNBUFFERED": "1"}
            with open(log_path, "wb") as log:
                proc = subprocess.Popen(cmd, stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                                        env=env, cwd=self.root, start_new_session=True)
            record = {"id": job_id, "kind": kind, "clone": clone, "user": user, "command": cmd, "pid": proc.pid,
                      "started": _now(), "finished": None, "state": "running", "returncode": None}
            write_json_atomic(self._record_path(job_id), record)
            self._procs[job_id] = proc
        threading.Thread(target=self._wait, args=(job_id, proc, record), daemon=True).start()
        return record

    def _wait(self, job_id: str, proc: subprocess.Popen, record: dict) -> None:
        rc = proc.wait()
        with self._lock:
            stopped = self._stopped(job_id)  # stop_clone ended it: that, not its return code, is what happened
            state = "stopped" if stopped else "done" if rc == 0 else "failed"
            write_json_atomic(self._record_path(job_id), {**record, "finished": _now(), "returncode": rc,
                                                          "state": state, **({"stopped": stopped} if stopped else {})})
            self._procs.pop(job_id, None)

    def _stopped(self, job_id: str) -> str | None:
        with contextlib.suppress(OSError, json.JSONDecodeError):
            return json.loads(self._record_path(job_id).read_text()).get("stopped")
        return None

    def stop_clone(self, clone: str, reason: str, grace_s: float = 5.0) -> list[str]:
        """End every running job of `clone` (its whole process group: ffmpeg and workers too), marking each as
        stopped for `reason`; returns their ids. A job left by an earlier studio is ended only if its process is
        still the command it recorded (a pid may have been reused since)."""
        with self._lock:
            victims = []
            for rec in self.for_clone(clone, last=1000):
                if rec["state"] != "running":
                    continue
                proc = self._procs.get(rec["id"])
                if proc is None and not _runs(rec.get("pid"), rec.get("command") or []):
                    continue
                write_json_atomic(self._record_path(rec["id"]), {**rec, "stopped": reason})
                pid = proc.pid if proc is not None else rec["pid"]
                with contextlib.suppress(ProcessLookupError, PermissionError):
                    os.killpg(pid, signal.SIGTERM)
                victims.append((rec, proc, pid))
        for rec, proc, pid in victims:
            deadline = time.monotonic() + grace_s
            while time.monotonic() < deadline and (proc.poll() is None if proc is not None else _alive(pid)):
                time.sleep(0.1)
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.killpg(pid, signal.SIGKILL)  # whatever ignored the request (a worker, ffmpeg) ends now
            # A killed render leaves its half-written video (render.py names it .<name>.<pid>...mp4): never delivered,
            # never listed, but the person's face all the same.
            for leftover in (self.root / "renders" / clone).glob(f".*.{pid}.*mp4"):
                leftover.unlink(missing_ok=True)
            if proc is None:  # no waiting thread will write its end
                write_json_atomic(self._record_path(rec["id"]), {**rec, "stopped": reason, "state": "stopped",
                                                                  "finished": _now()})
        return [rec["id"] for rec, _, _ in victims]

    def record(self, job_id: str) -> dict:
        path = self._record_path(job_id)
        try:
            rec = json.loads(path.read_text())
        except (OSError, json.JSONDecodeError):
            raise JobError(f"no job {job_id!r}") from None
        if rec["state"] == "running" and job_id not in self._procs and not _alive(rec.get("pid")):
            # Started by a studio that has stopped since: its log's last line says whether it got to the end.
            log_path = self.dir / f"{job_id}.log"
            tail = log_path.read_text(errors="replace").splitlines()[-3:] if log_path.is_file() else []
            finished = any(f"] - clone {rec['clone']}: " in ln or _RENDERED.search(ln) for ln in tail)
            rec["state"], rec["returncode"] = ("done", 0) if finished else ("interrupted", None)
        return rec

    def status(self, job_id: str) -> dict:
        rec = self.record(job_id)
        log_path = self.dir / f"{job_id}.log"
        text = log_path.read_text(errors="replace") if log_path.is_file() else ""
        parsed = parse_log(text, rec["kind"], rec["returncode"] if rec["state"] != "running" else None)
        if rec["state"] == "interrupted" and not parsed["error"]:
            parsed["error"], parsed["fix"] = "the studio stopped while this job ran", "start it again"
        if rec.get("stopped"):
            parsed["error"], parsed["fix"] = f"stopped: {rec['stopped']}", None
        return {**{k: rec[k] for k in ("id", "kind", "clone", "user", "started", "finished", "state", "returncode")},
                **parsed, "log_tail": "\n".join(text.splitlines()[-40:])}

    def for_clone(self, clone: str, last: int = 10) -> list[dict]:
        recs = []
        for path in self.dir.glob("*.json"):
            try:
                rec = json.loads(path.read_text())
            except (OSError, json.JSONDecodeError):
                continue
            if rec.get("clone") == clone:
                recs.append(self.record(rec["id"]))
        return sorted(recs, key=lambda r: r["started"], reverse=True)[:last]

    def running(self, clone: str) -> dict | None:
        return next((r for r in self.for_clone(clone, last=1000) if r["state"] == "running"), None)

    def stop_all(self) -> None:
        """The studio is shutting down: end the jobs it started (each by its own process group)."""
        with self._lock:
            for proc in list(self._procs.values()):
                if proc.poll() is None:
                    try:
                        os.killpg(proc.pid, 15)
                    except ProcessLookupError:
                        pass
