"""The studio's web app (Starlette, server-rendered Jinja2 pages, a little plain JavaScript for uploads and
progress). Every POST goes through `action`: signed-in user, CSRF token, role, audit line, clear refusal."""

from __future__ import annotations

import contextlib
import datetime as dt
import functools
import logging
import tempfile
import urllib.parse
from datetime import datetime, timezone
from pathlib import Path

import jinja2
import yaml
from starlette.applications import Starlette
from starlette.concurrency import run_in_threadpool
from starlette.datastructures import UploadFile
from starlette.middleware import Middleware
from starlette.middleware.sessions import SessionMiddleware
from starlette.requests import Request
from starlette.responses import FileResponse, HTMLResponse, JSONResponse, RedirectResponse, Response
from starlette.routing import Mount, Route
from starlette.staticfiles import StaticFiles

from clonetrain.product import consent, registry
from clonetrain.contract import files
from clonetrain.contract import metrics as declared
from clonetrain.core.errors import ClonetrainError, ConsentError, LockedError
from clonetrain.product.nightly import compose
from clonetrain.studio import audit, auth, overview, uploads
from clonetrain.studio.jobs import JobError, Jobs, override
from clonetrain.studio.settings import Settings, SettingsError
from clonetrain.core.workspace import Workspace, atomic_path, validate_clone_id, write_text_atomic

log = logging.getLogger(__name__)
HERE = Path(__file__).resolve().parent
CHUNK = 1 << 20
# Room for a form's fields (a body that is not multipart is only fields).
FIELDS_BYTES = 64 << 10
# What each role lets a user do, as the page says it when refusing.
ROLE_TEXT = {"upload": "upload footage, record consent and train", "approve": "promote, keep or roll back versions",
             "render": "render videos", "admin": "administer the studio"}


class Refusal(ClonetrainError):
    def __init__(self, status: int, message: str, fix: str | None = None):
        super().__init__(message, fix)
        self.status = status


def _status(err: ClonetrainError) -> int:
    if isinstance(err, (uploads.UploadError, Refusal)):
        return err.status
    if isinstance(err, (JobError, LockedError)):
        return 409
    if isinstance(err, ConsentError):
        return 403
    return 400


class Studio:
    """The app's state: settings, the jobs it started, templates, the pipeline's config (for the promotion gate)."""

    def __init__(self, settings: Settings):
        self.settings = settings
        self.root = settings.root
        self.dir = settings.studio_dir
        (self.root / "raw").mkdir(parents=True, exist_ok=True)
        self.tmp = self.dir / "tmp"
        self.tmp.mkdir(parents=True, exist_ok=True)
        # Form uploads (the consent document, speech) are spooled by Starlette into tempfile's folder: keep that
        # inside the data root, so nothing the studio receives is ever written outside it.
        tempfile.tempdir = str(self.tmp)
        self.jobs = Jobs(self.root, self.dir, settings.pipeline_overrides)
        try:  # the pipeline's settings as every job will see them (the promotion gate reads nightly.*)
            self.cfg = compose(self.root, "studio", list(settings.pipeline_overrides))
        except Exception as err:  # noqa: BLE001 - Hydra's composition errors have no common base we can name
            raise SettingsError(f"pipeline_overrides {list(settings.pipeline_overrides)} do not compose: {err}",
                                "correct them: each is a Hydra override such as train.max_minutes=30") from None
        self.env = jinja2.Environment(loader=jinja2.FileSystemLoader(HERE / "templates"),
                                      autoescape=jinja2.select_autoescape(default=True))
        self.env.globals.update(ROLES=ROLE_TEXT, USES=list(consent.USES))

    def page(self, request: Request, name: str, status: int = 200, **context) -> HTMLResponse:
        user = self.user(request)
        flash = request.session.pop("flash", None)
        html = self.env.get_template(name).render(request=request, user=user, csrf=auth.csrf_token(request.session),
                                                  flash=flash, listed=declared.LISTED, **context)
        return HTMLResponse(html, status_code=status)

    def user(self, request: Request):
        name = request.session.get("user")
        user = self.settings.users.get(name) if name else None
        if user is None:
            return None
        if datetime.now(timezone.utc).timestamp() - request.session.get("since", 0) > self.settings.session_hours * 3600:
            request.session.clear()
            return None
        return user

    def refuse(self, request: Request, status: int, message: str, fix: str | None = None) -> Response:
        if request.headers.get("x-requested-with") == "fetch":
            return JSONResponse({"error": message, "fix": fix}, status_code=status)
        return self.page(request, "refused.html", status=status, message=message, fix=fix)

    def workspace(self, request: Request) -> Workspace:
        clone = validate_clone_id(request.path_params["clone"])
        ws = Workspace(self.root, clone)
        if not ws.raw_dir.is_dir():
            raise Refusal(404, f"there is no clone {clone!r}", "create it on the clones page first")
        return ws


def action(roles: tuple[str, ...], what: str, body: str = "form", max_mb: float | str | None = None):
    """A POST endpoint: the user is signed in, the CSRF token matches (a form field, or the X-CSRF-Token header,
    which a streamed upload must use), the user has one of `roles` (none named: any signed-in user); every
    outcome is audited.
    body: form (urlencoded or multipart, at most max_mb MB, or the setting max_mb names) or stream (the handler
    reads the body itself)."""

    def wrap(fn):
        @functools.wraps(fn)
        async def endpoint(request: Request) -> Response:
            studio: Studio = request.app.state.studio
            user = studio.user(request)
            clone = request.path_params.get("clone")
            if user is None:
                return studio.refuse(request, 401, "you are not signed in (or your session expired)", "sign in again")
            form = None
            token = request.headers.get(auth.CSRF_HEADER)
            try:
                if body == "form":
                    mb = getattr(studio.settings, max_mb) if isinstance(max_mb, str) else (max_mb or 1)
                    form = await read_form(request, mb)
                    token = token or form.get(auth.CSRF_FIELD)
                if not auth.csrf_ok(request.session, token):
                    raise Refusal(403, "the request has no valid CSRF token: it did not come from the studio's page "
                                       "(or the page is older than your sign-in)", "reload the page and try again")
                if roles and not any(user.may(r) for r in roles):
                    raise Refusal(403, f"{user.name} may not {what}: that needs the "
                                       f"{' or '.join(repr(r) for r in roles)} role",
                                  "ask an admin to give you the role in the studio's settings file")
                response = await fn(request, studio, user, form)
                audit.record(studio.dir, user.name, fn.__name__, clone, "ok", **getattr(request.state, "audit", {}))
                return response
            except ClonetrainError as err:
                audit.record(studio.dir, user.name, fn.__name__, clone, "refused", reason=err.message)
                return studio.refuse(request, _status(err), err.message, err.fix)
            except Exception as err:  # noqa: BLE001 - a bug: logged with its traceback, audited, a page not a crash
                log.exception("%s failed", fn.__name__)
                audit.record(studio.dir, user.name, fn.__name__, clone, "error", reason=f"{type(err).__name__}: {err}")
                return studio.refuse(request, 500, f"the studio failed: {type(err).__name__}: {err}",
                                     "try again; if it repeats, send the studio's log to whoever runs it")
            finally:
                if form is not None:
                    await form.close()

        endpoint.is_action = True
        return endpoint

    return wrap


async def read_form(request: Request, max_mb: float):
    """The form of a POST, refused before it is read when it is larger than max_mb (plus room for the fields):
    Starlette would otherwise hold a large urlencoded body in memory. Only a multipart form carries files, so any
    other body gets the fields' room alone."""
    multipart = request.headers.get("content-type", "").startswith("multipart/form-data")
    limit = (max_mb * 2**20 if multipart else 0) + FIELDS_BYTES
    length = request.headers.get("content-length")
    if length is None or not length.isdigit():
        raise Refusal(411, "the request does not say its length", "send it from the studio's page")
    if int(length) > limit:
        raise Refusal(413, f"the request is larger than the limit of {_size(limit)}",
                      "attach a smaller file" if multipart else "send the form from the studio's page")
    return await request.form(max_files=2, max_fields=40)


def _size(n: float) -> str:
    return f"{n / 2**20:.0f} MB" if n >= 2**20 else f"{n / 2**10:.0f} KB"


def signed_in(fn):
    @functools.wraps(fn)
    async def endpoint(request: Request) -> Response:
        studio: Studio = request.app.state.studio
        user = studio.user(request)
        if user is None:
            if request.headers.get("x-requested-with") == "fetch":
                return JSONResponse({"error": "not signed in"}, status_code=401)
            return RedirectResponse("/login", status_code=303)
        try:
            return await fn(request, studio, user)
        except ClonetrainError as err:
            return studio.refuse(request, _status(err), err.message, err.fix)

    return endpoint


def back(request: Request, text: str, anchor: str = "") -> RedirectResponse:
    request.session["flash"] = text
    return RedirectResponse(f"/clones/{request.path_params['clone']}{anchor}", status_code=303)


# ---- sign in -------------------------------------------------------------------------------------------------

async def login_page(request: Request) -> Response:
    studio: Studio = request.app.state.studio
    return studio.page(request, "login.html", no_users=not studio.settings.users, error=None)


async def login(request: Request) -> Response:
    studio: Studio = request.app.state.studio
    try:
        form = await read_form(request, 0)
    except Refusal as err:
        return studio.refuse(request, err.status, err.message, err.fix)
    if not auth.csrf_ok(request.session, form.get(auth.CSRF_FIELD)):
        audit.record(studio.dir, None, "login", outcome="refused", reason="no CSRF token")
        return studio.refuse(request, 403, "the sign-in form has no valid CSRF token", "reload the page and try again")
    name = str(form.get("user", ""))
    user = await run_in_threadpool(auth.check_login, studio.settings.users, name, str(form.get("password", "")))
    if user is None:
        audit.record(studio.dir, name[:64], "login", outcome="refused", reason="wrong user or password")
        return studio.page(request, "login.html", status=401, no_users=False, error="wrong user name or password")
    request.session.clear()  # a fresh session (and CSRF token) for the signed-in user
    request.session.update({"user": user.name, "since": datetime.now(timezone.utc).timestamp()})
    audit.record(studio.dir, user.name, "login")
    return RedirectResponse("/", status_code=303)


@action((), "sign out")  # no role needed: whoever is signed in may sign out
async def logout(request, studio, user, form):
    request.session.clear()
    return RedirectResponse("/login", status_code=303)


# ---- clones ----------------------------------------------------------------------------------------------------

@signed_in
async def clones_page(request, studio, user):
    rows = await run_in_threadpool(overview.summaries, studio.root)
    return studio.page(request, "clones.html", rows=rows)


@action(("upload",), "create clones")
async def create_clone(request, studio, user, form):
    clone = validate_clone_id(str(form.get("clone", "")).strip())
    ws = Workspace(studio.root, clone)
    if ws.raw_dir.exists():
        raise Refusal(409, f"clone {clone!r} exists already", "open it from the list")
    ws.raw_dir.mkdir(parents=True)
    request.session["flash"] = f"clone {clone} created: upload its takes and record its consent"
    return RedirectResponse(f"/clones/{clone}", status_code=303)


@signed_in
async def clone_page(request, studio, user):
    ws = studio.workspace(request)
    clone = ws.clone

    def gather():
        jobs = studio.jobs.for_clone(clone)
        return {
            "clone": clone, "takes": overview.takes(studio.root, studio.dir, clone),
            "consent": overview.consent_state(studio.root, clone),
            "versions": overview.versions(studio.root, clone, studio.cfg.nightly),
            "verdict": overview.clone_verdict(ws, (registry.read(studio.root)["clones"]).get(clone)),
            "looks": overview.looks(studio.root, clone), "renders": overview.renders(studio.root, clone),
            "voice": overview.voice_available(studio.root, clone), "jobs": jobs,
            "job": studio.jobs.status(jobs[0]["id"]) if jobs else None,
            "trained": files.exists(ws, "train", "model"),
            "audit": audit.read(studio.dir, clone, last=15)[::-1],
            "max_upload_mb": studio.settings.max_upload_mb, "today": dt.date.today().isoformat(),
            "next_year": (dt.date.today() + dt.timedelta(days=365)).isoformat(),
        }

    return studio.page(request, "clone.html", **await run_in_threadpool(gather))


# ---- upload ----------------------------------------------------------------------------------------------------

@action(("upload",), "upload footage", body="stream")
async def upload_take(request, studio, user, form):
    ws = studio.workspace(request)
    name = uploads.check_name(urllib.parse.unquote(request.headers.get("x-file-name", "")))
    limit = studio.settings.max_upload_bytes
    length = request.headers.get("content-length")
    if length and length.isdigit() and int(length) > limit:
        raise uploads.UploadError(f"{name} is {int(length) / 2**20:.0f} MB, over the upload limit of "
                                  f"{limit / 2**20:g} MB", "upload a shorter take, or ask the admin to raise "
                                  "max_upload_mb", status=413)
    with uploads.clone_lock(studio.dir, ws.clone):
        # Checked under the lock a job also takes to start: footage never changes under a running job.
        if (busy := studio.jobs.running(ws.clone)) is not None:
            raise uploads.UploadError(f"clone {ws.clone!r} is being processed ({busy['kind']}); its footage cannot "
                                      "change now", "upload again when the job has finished", status=409)
        async with uploads.receive(request.stream(), studio.dir, limit) as (part, size, sha):
            ext, facts = await run_in_threadpool(uploads.inspect_take, part, name)
            stored = uploads.store_take(studio.dir, ws.raw_dir, ws.clone, part, name, ext, facts, size, sha, user.name)
    request.state.audit = {"name": name, "stored": stored, "bytes": size, "sha256": sha}
    note = ("no sound track: upload its sound too, as a WAV with the same name"
            if facts.get("kind") == "video" and not facts.get("has_audio") else "")
    return JSONResponse({"name": name, "stored": stored, **facts, "note": note})


@action(("upload",), "remove takes")
async def remove_take(request, studio, user, form):
    ws = studio.workspace(request)
    wanted = request.path_params["file"]
    take = next((t for t in overview.takes(studio.root, studio.dir, ws.clone) if t["file"] == wanted), None)
    if take is None:
        raise Refusal(404, f"clone {ws.clone!r} has no take {wanted!r}")
    with uploads.clone_lock(studio.dir, ws.clone):
        if (busy := studio.jobs.running(ws.clone)) is not None:
            raise Refusal(409, f"clone {ws.clone!r} is being processed ({busy['kind']}); its footage cannot change now",
                          "remove it when the job has finished")
        kept = uploads.set_aside(studio.dir, ws.raw_dir, ws.clone, take["file"])
    request.state.audit = {"name": take["name"], "stored": take["file"], "kept_as": str(kept.relative_to(studio.root))}
    return back(request, f"{take['name']} removed from the clone (kept aside, nothing is deleted)", "#footage")


# ---- consent ---------------------------------------------------------------------------------------------------

async def _save_upload(file: UploadFile, dest: Path, limit: int) -> None:
    """Copy a form's file to dest (atomically) in chunks."""
    size = 0
    with atomic_path(dest) as tmp, open(tmp, "wb") as out:
        while chunk := await file.read(CHUNK):
            size += len(chunk)
            if size > limit:
                raise uploads.UploadError(f"the file is over the limit of {limit / 2**20:g} MB", status=413)
            out.write(chunk)


@action(("upload",), "record consent", max_mb="max_document_mb")
async def record_consent(request, studio, user, form):
    ws = studio.workspace(request)
    previous = overview.consent_state(studio.root, ws.clone)["record"]
    path = ws.raw_dir / consent.FILENAME
    fields = {k: str(form.get(k, "")).strip() for k in ("person", "recorded_by", "date", "expires")}
    if any(ch < " " for v in fields.values() for ch in v):
        raise Refusal(400, "a consent field holds a line break or a control character", "type each field on one line")
    record = {**fields, "permitted_uses": [str(u) for u in form.getlist("permitted_uses")]}
    doc = form.get("document")
    stamp = datetime.now(timezone.utc).strftime("%Y%m%d-%H%M%S")
    if isinstance(doc, UploadFile) and doc.filename:
        ext = uploads.document_extension(await doc.read(16))
        await doc.seek(0)
        record["document"] = f"consent-document-{stamp}{ext}"
    elif previous is not None and previous.revoked is None and previous.person == record["person"] \
            and (old := _current_document(path)):
        record["document"] = old  # a renewal by the same person keeps the signed document already on file
    elif previous is not None and (previous.revoked is not None or previous.person != record["person"]):
        # A revoked consent is never restored without a new signature, nor one person's release reused for another.
        why = (f"the consent on file was revoked on {previous.revoked}" if previous.revoked is not None
               else f"the document on file is {previous.person}'s release, not {record['person']}'s")
        raise Refusal(400, f"{why}: a new signed consent document is needed",
                      "attach the newly signed release (PDF or a photo)")
    else:
        raise Refusal(400, "the signed consent document is missing", "attach the signed release (PDF or a photo)")
    text = (f"# recorded in the clonetrain studio by {user.name} on "
            f"{datetime.now(timezone.utc).isoformat(timespec='seconds')}\n" + yaml.safe_dump(record, sort_keys=False))
    # Validate exactly as every run will (form, dates, uses; in force today) before anything is written.
    check = studio.tmp / f"consent-{stamp}-{ws.clone}.yaml"
    check.write_text(text)
    try:
        consent.in_force(consent.parse(check, ws.clone), check, ws.clone, "train")
    except ConsentError as err:
        raise ConsentError(err.message.replace(str(check), "the consent form"),
                           "correct the form and send it again") from None
    finally:
        check.unlink(missing_ok=True)
    if isinstance(doc, UploadFile) and doc.filename:
        await _save_upload(doc, ws.raw_dir / record["document"], studio.settings.max_document_bytes)
    if path.is_file():  # nothing lost: the record it replaces is kept
        history = studio.dir / "consent-history" / ws.clone
        history.mkdir(parents=True, exist_ok=True)
        write_text_atomic(history / f"{stamp}.yaml", path.read_text())
    write_text_atomic(path, text)
    request.state.audit = {"person": record["person"], "uses": record["permitted_uses"], "expires": record["expires"],
                           "document": record["document"]}
    return back(request, f"consent of {record['person']} recorded", "#consent")


def _current_document(path: Path) -> str | None:
    with contextlib.suppress(OSError, yaml.YAMLError, AttributeError):
        doc = (yaml.safe_load(path.read_text()) or {}).get("document")
        if doc and (path.parent / str(doc)).is_file() and "/" not in str(doc):
            return str(doc)
    return None


@action(("upload", "approve"), "revoke consent")
async def revoke_consent(request, studio, user, form):
    ws = studio.workspace(request)
    await run_in_threadpool(consent.revoke, studio.root, ws.clone)
    why = f"consent revoked in the studio by {user.name}"
    # Revoked first (a job that starts now is refused by its own consent check), then what already runs is ended.
    stopped = await run_in_threadpool(studio.jobs.stop_clone, ws.clone, why)
    taken = await run_in_threadpool(registry.take_down, studio.root, ws.clone, why)
    request.state.audit = {"stopped_jobs": stopped, **({"taken_down": taken} if taken else {})}
    return back(request, "consent revoked: nothing of this clone is trained or rendered from now on"
                + (f"; {len(stopped)} running job(s) stopped" if stopped else "")
                + (f"; live version {taken} taken down" if taken else ""), "#consent")


# ---- jobs ------------------------------------------------------------------------------------------------------

def _start(studio: Studio, request: Request, kind: str, user, extra: list[str] | None = None, use: str = "train"):
    ws = studio.workspace(request)
    consent.require_live(studio.root, ws.clone, use=use)  # a clear refusal now, not a failed job
    with uploads.clone_lock(studio.dir, ws.clone):  # not while a take is still arriving
        job = studio.jobs.start(kind, ws.clone, user.name, extra)
    request.state.audit = {"job": job["id"], **({"args": extra} if extra else {})}
    return back(request, f"{kind} started", "#job")


@action(("upload",), "check footage")
async def check_footage(request, studio, user, form):
    return _start(studio, request, "check", user)


@action(("upload",), "train clones")
async def train(request, studio, user, form):
    return _start(studio, request, "train", user)


@action(("render",), "render videos", max_mb="max_upload_mb")
async def render(request, studio, user, form):
    ws = studio.workspace(request)
    consent.require_live(studio.root, ws.clone, use="render")
    if registry.live(studio.root, ws.clone) is None and not files.exists(ws, "train", "model"):
        raise Refusal(409, f"clone {ws.clone!r} has no trained model yet", "train it first")
    speech, text = form.get("speech"), str(form.get("text", "")).strip()
    folder = studio.dir / "speech" / ws.clone
    if isinstance(speech, UploadFile) and speech.filename:
        name = uploads.check_name(speech.filename)
        async with uploads.receive(_chunks(speech), studio.dir, studio.settings.max_upload_bytes) as (part, _, _sha):
            ext = await run_in_threadpool(uploads.inspect_speech, part, name)
            stored = uploads.store_speech(studio.dir, ws.clone, part, ext)
        extra = [override("audio", str(stored.relative_to(studio.root)))]
    elif text:
        if not overview.voice_available(studio.root, ws.clone)["available"]:
            raise Refusal(409, "this clone has no voice yet, so it cannot speak typed text",
                          "upload recorded speech instead (or more footage of the person speaking, then train again)")
        folder.mkdir(parents=True, exist_ok=True)
        script = folder / f"script-{datetime.now(timezone.utc).strftime('%Y%m%d-%H%M%S')}.txt"
        write_text_atomic(script, text + "\n")
        extra = [override("text_file", str(script.relative_to(studio.root)))]
    else:
        raise Refusal(400, "nothing to render: no speech file and no text", "choose a sound file, or type a script")
    return _start(studio, request, "render", user, extra, use="render")


async def _chunks(file: UploadFile):
    while chunk := await file.read(CHUNK):
        yield chunk


@signed_in
async def job_status(request, studio, user):
    status = await run_in_threadpool(studio.jobs.status, request.path_params["job"])
    return JSONResponse(status)


# ---- versions --------------------------------------------------------------------------------------------------

def _version(studio: Studio, request: Request) -> tuple[Workspace, str, dict]:
    ws = studio.workspace(request)
    ver = request.path_params["version"]
    entry = registry.version(studio.root, ws.clone, ver)
    if entry is None:
        raise Refusal(404, f"clone {ws.clone!r} has no version {ver!r}")
    return ws, ver, entry


@action(("approve",), "promote versions")
async def promote(request, studio, user, form):
    ws, ver, entry = _version(studio, request)
    consent.require_live(studio.root, ws.clone, use="render")  # a clone without consent is never put live
    gate = next((v for v in overview.versions(studio.root, ws.clone, studio.cfg.nightly) if v["version"] == ver), {})
    reason = f"promoted in the studio by {user.name}" + ("" if gate.get("gate_ok") else f" (gate: {gate.get('gate')})")
    await run_in_threadpool(registry.promote, studio.root, ws.clone, ver, reason)
    request.state.audit = {"version": ver, "reason": reason}
    return back(request, f"{ver} is live", "#versions")


@action(("approve",), "keep or decline versions")
async def keep(request, studio, user, form):
    ws, ver, entry = _version(studio, request)
    if entry["status"] == "live":
        raise Refusal(409, f"{ver} is the live version", "promote another version to replace it")
    live = registry.live(studio.root, ws.clone)
    await run_in_threadpool(registry.mark, studio.root, ws.clone, ver, "rejected",
                            f"declined in the studio by {user.name}; live stays {live[0] if live else 'none'}")
    request.state.audit = {"version": ver}
    return back(request, f"{ver} declined; the live version stays", "#versions")


# ---- files -----------------------------------------------------------------------------------------------------

@signed_in
async def look(request, studio, user):
    ws = studio.workspace(request)
    found = overview.look_path(studio.root, ws.clone, request.path_params["name"])
    if found is None:
        raise Refusal(404, "not there (yet)", "train the clone first")
    path, media = found
    headers = {"Content-Security-Policy": "sandbox"} if media == "text/html" else {}
    return FileResponse(path, media_type=media, headers=headers)


@signed_in
async def download(request, studio, user):
    ws = studio.workspace(request)
    path = overview.render_file(studio.root, ws.clone, request.path_params["name"])
    if path is None:
        raise Refusal(404, "no such render")
    audit.record(studio.dir, user.name, "download", ws.clone, file=path.name)
    return FileResponse(path, filename=path.name)


@signed_in
async def audit_page(request, studio, user):
    if not user.may("admin"):
        raise Refusal(403, f"{user.name} may not read the audit log: that needs the 'admin' role")
    return studio.page(request, "audit.html", rows=audit.read(studio.dir, last=500)[::-1])


class SecurityHeaders:
    """Headers every answer carries (a pure ASGI middleware: streamed uploads and downloads pass straight through)."""

    HTML_POLICY = (b"default-src 'self'; img-src 'self' data:; media-src 'self'; style-src 'self' 'unsafe-inline'; "
                   b"frame-ancestors 'self'")

    def __init__(self, app):
        self.app = app

    async def __call__(self, scope, receive, send):
        if scope["type"] != "http":
            return await self.app(scope, receive, send)

        async def send_with_headers(message):
            if message["type"] == "http.response.start":
                headers = list(message.get("headers", []))
                names = {k.lower() for k, _ in headers}
                extra = [(b"x-content-type-options", b"nosniff"), (b"x-frame-options", b"SAMEORIGIN"),
                         (b"referrer-policy", b"same-origin")]
                ctype = dict(headers).get(b"content-type", b"")
                if ctype.startswith(b"text/html"):
                    extra.append((b"content-security-policy", self.HTML_POLICY))
                headers += [(k, v) for k, v in extra if k not in names]
                message = {**message, "headers": headers}
            await send(message)

        await self.app(scope, receive, send_with_headers)


ROUTES = [
    Route("/login", login_page, methods=["GET"]),
    Route("/login", login, methods=["POST"]),
    Route("/logout", logout, methods=["POST"]),
    Route("/", clones_page, methods=["GET"]),
    Route("/clones", create_clone, methods=["POST"]),
    Route("/clones/{clone}", clone_page, methods=["GET"]),
    Route("/clones/{clone}/takes", upload_take, methods=["POST"]),
    Route("/clones/{clone}/takes/{file}/remove", remove_take, methods=["POST"]),
    Route("/clones/{clone}/consent", record_consent, methods=["POST"]),
    Route("/clones/{clone}/consent/revoke", revoke_consent, methods=["POST"]),
    Route("/clones/{clone}/check", check_footage, methods=["POST"]),
    Route("/clones/{clone}/train", train, methods=["POST"]),
    Route("/clones/{clone}/render", render, methods=["POST"]),
    Route("/clones/{clone}/versions/{version}/promote", promote, methods=["POST"]),
    Route("/clones/{clone}/versions/{version}/keep", keep, methods=["POST"]),
    Route("/clones/{clone}/look/{name}", look, methods=["GET"]),
    Route("/clones/{clone}/renders/{name}", download, methods=["GET"]),
    Route("/jobs/{job}", job_status, methods=["GET"]),
    Route("/audit", audit_page, methods=["GET"]),
    Mount("/static", StaticFiles(directory=HERE / "static"), name="static"),
]


def create_app(settings: Settings) -> Starlette:
    studio = Studio(settings)

    @contextlib.asynccontextmanager
    async def lifespan(app):
        yield
        studio.jobs.stop_all()

    app = Starlette(routes=ROUTES, lifespan=lifespan, middleware=[
        Middleware(SessionMiddleware, secret_key=auth.secret_key(studio.dir), session_cookie="clonetrain_studio",
                   max_age=int(settings.session_hours * 3600), same_site="strict", https_only=False),
        Middleware(SecurityHeaders),
    ])
    app.state.studio = studio
    return app
