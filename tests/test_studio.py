"""The studio's web page, served for real (python -m clonetrain.studio in a subprocess, on a fresh data root) and
driven by headless Chromium: a host's takes from the real footage go from upload to a rendered, labelled video;
and the hostile cases of issue 16 each get a clear refusal, with nothing written outside the data root.

Screenshots for the README: CLONETRAIN_SCREENSHOTS=docs/studio .venv/bin/python -m pytest -q tests/test_studio.py
"""

from __future__ import annotations

import contextlib
import html
import json
import os
import re
import shutil
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path

import ffmpeg
import pytest
import requests
import yaml

from clonetrain.product import consent, registry
from clonetrain.media.convert import iter_frames
from clonetrain.studio import auth
from clonetrain.studio.app import ROUTES
from conftest import PROJECT, TINY, assert_labelled, ffmpeg as run_ffmpeg

PASSWORDS = {"boss": "boss-pw", "ulla": "ulla-pw", "rita": "rita-pw", "nora": "nora-pw"}
ROLES = {"boss": ["admin"], "ulla": ["upload"], "rita": ["render"], "nora": []}  # nora may only look
MAX_UPLOAD_MB = 3


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="session")
def studio(footage, tmp_path_factory):
    """A studio on a fresh data root, with four users and TINY pipeline settings. The server's own temporary
    folder ($TMPDIR) is outside the root: the studio must not write there."""
    base = tmp_path_factory.mktemp("studio")
    root, outside, inputs = base / "data", base / "outside_tmp", base / "inputs"
    for d in (outside, inputs):
        d.mkdir()
    # Two takes of the one-minute clip (9 s each, 18 s in all: enough speech for lip-sync, too little for a voice),
    # the speech to render, and a signed release.
    for i, start in enumerate((0, 9), 1):
        run_ffmpeg("-ss", str(start), "-i", str(footage / "talk_man_60s.mp4"), "-t", "9", "-c:v", "libx264",
                   "-preset", "veryfast", "-crf", "20", "-c:a", "aac", str(inputs / f"host take {i}.mp4"))
    run_ffmpeg("-i", str(footage / "driving_speech_en_60s.wav"), "-t", "3", str(inputs / "speech.wav"))
    (inputs / "release.pdf").write_bytes(b"%PDF-1.4\n% signed release of the test speaker\n%%EOF\n")
    settings = {
        "root": str(root), "host": "127.0.0.1", "port": _free_port(), "max_upload_mb": MAX_UPLOAD_MB,
        # The pipeline's tiny test settings, passed to every job the page starts.
        "pipeline_overrides": list(TINY),
        "users": {u: {"roles": ROLES[u], "password": auth.hash_password(PASSWORDS[u], n=2**10)} for u in PASSWORDS},
    }
    config = base / "studio.yaml"
    config.write_text(yaml.safe_dump(settings))
    env = {**os.environ, "TMPDIR": str(outside)}
    log = open(base / "server.log", "wb")
    proc = subprocess.Popen([sys.executable, "-m", "clonetrain.studio", "--config", str(config)], cwd=PROJECT,
                            stdout=log, stderr=subprocess.STDOUT, env=env)
    url = f"http://127.0.0.1:{settings['port']}"
    deadline = time.monotonic() + 60
    while True:
        try:
            requests.get(url + "/login", timeout=2)
            break
        except requests.ConnectionError:
            if proc.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError((base / "server.log").read_text())
            time.sleep(0.2)
    yield {"url": url, "root": root, "base": base, "outside": outside, "inputs": inputs}
    proc.terminate()
    proc.wait(timeout=20)
    log.close()


class Client:
    """A signed-in user talking to the studio as a script would (for the hostile cases)."""

    def __init__(self, url: str, user: str):
        self.url, self.s = url, requests.Session()
        token = self.token("/login")
        r = self.s.post(url + "/login", data={"user": user, "password": PASSWORDS[user], "csrf": token})
        assert r.ok and "signed in as" in r.text, r.text

    def token(self, path: str = "/") -> str:
        return re.search(r'name="csrf" content="([^"]+)"', self.s.get(self.url + path).text).group(1)

    def post(self, path: str, csrf: bool = True, **kw) -> requests.Response:
        data = dict(kw.pop("data", {}) or {})
        if csrf:
            data["csrf"] = self.token()
        return self.s.post(self.url + path, data=data, allow_redirects=False, **kw)

    def upload(self, clone: str, name: str, body, csrf: bool = True) -> requests.Response:
        headers = {"X-File-Name": requests.utils.quote(name), "X-Requested-With": "fetch"}
        if csrf:
            headers["X-CSRF-Token"] = self.token()
        return self.s.post(f"{self.url}/clones/{clone}/takes", data=body, headers=headers)


@pytest.fixture(scope="session")
def boss(studio):
    """The admin's client."""
    return Client(studio["url"], "boss")


@pytest.fixture
def hostile(studio, boss, request):
    """The admin's client, and a clone of the test's own that the hostile case aims at (hostile.clone): no test
    sees what another left behind, so they pass in any order."""
    clone = "h-" + re.sub(r"[^a-z0-9]+", "-", request.node.name.lower())[:60].strip("-")
    r = boss.post("/clones", data={"clone": clone})
    assert r.status_code == 303, r.text
    boss.clone = clone
    return boss


def _files(root: Path) -> set[str]:
    return {str(p.relative_to(root)) for p in root.rglob("*") if p.is_file()}


# ---- the whole path in a real browser -----------------------------------------------------------------------

@pytest.fixture(scope="session")
def browser():
    from selenium import webdriver  # the dev extra's: a missing selenium fails the test, it does not skip it
    from selenium.webdriver.chrome.service import Service

    chromium = shutil.which("chromium") or shutil.which("chromium-browser")
    driver_path = shutil.which("chromedriver")
    if not chromium or not driver_path:
        pytest.fail("headless Chromium is missing: apt-get install chromium chromium-driver (scripts/install.sh does)")
    opts = webdriver.ChromeOptions()
    opts.binary_location = chromium
    for arg in ("--headless=new", "--no-sandbox", "--disable-dev-shm-usage", "--window-size=1100,900",
                "--disable-gpu", "--hide-scrollbars"):
        opts.add_argument(arg)
    driver = webdriver.Chrome(service=Service(driver_path), options=opts)
    yield driver
    driver.quit()


class Page:
    def __init__(self, driver, url: str):
        from selenium.webdriver.common.by import By
        from selenium.webdriver.support.ui import WebDriverWait

        self.d, self.url, self.By, self.Wait = driver, url, By, WebDriverWait
        self.shots = os.environ.get("CLONETRAIN_SCREENSHOTS")

    def find(self, css: str):
        return self.d.find_element(self.By.CSS_SELECTOR, css)

    def all(self, css: str):
        return self.d.find_elements(self.By.CSS_SELECTOR, css)

    def wait(self, check, timeout: float = 60, what: str = ""):
        from selenium.common.exceptions import NoSuchElementException, StaleElementReferenceException

        # The page reloads itself when a job ends or an upload is done: an element may vanish between two looks.
        return self.Wait(self.d, timeout, poll_frequency=0.3,
                         ignored_exceptions=(NoSuchElementException, StaleElementReferenceException)
                         ).until(lambda d: check(), message=what)

    def job(self) -> tuple[str, str, str] | None:
        """(job id, kind, state) of the job the page shows, read at once (the page may be between two loads)."""
        return self.d.execute_script(
            "const p = document.getElementById('job-panel');"
            "return p ? [p.dataset.job, document.getElementById('job-kind').textContent, p.dataset.state] : null;")

    def wait_job(self, kind: str, timeout: float = 300) -> None:
        """Until the page shows a new job of `kind` finished (the page polls it, then reloads); a failed job fails
        with its error. Call right after the click that started it."""
        def finished():
            job = self.job()
            return job and job[0] != self.before and job[1] == kind and job[2] in ("done", "failed", "interrupted") and job
        job = self.wait(finished, timeout, f"the {kind} job to finish")
        assert job[2] == "done", self.find("#job-panel").text

    def click_job(self, css: str) -> None:
        """Click what starts a job, remembering the job shown before it."""
        self.before = (self.job() or [None])[0]
        self.find(css).click()

    def shot(self, name: str, css: str | None = None) -> None:
        if not self.shots:
            return
        folder = PROJECT / self.shots
        folder.mkdir(parents=True, exist_ok=True)
        if css:
            self.d.execute_script("arguments[0].scrollIntoView()", self.find(css))
        path = folder / f"{name}.png"
        self.d.save_screenshot(str(path))
        from PIL import Image  # a README image: 256 colours are plenty for a web page, and a tenth of the bytes

        Image.open(path).convert("RGB").quantize(colors=256).save(path, optimize=True)


def test_a_host_goes_from_upload_to_a_labelled_video_in_the_browser(studio, browser, tmp_path):
    p, root, inputs = Page(browser, studio["url"]), studio["root"], studio["inputs"]
    d = p.d
    d.get(studio["url"] + "/")
    p.find("#user").send_keys("boss")
    p.find("#password").send_keys(PASSWORDS["boss"])
    p.shot("01-sign-in")
    p.find("#signin").click()
    p.wait(lambda: p.find("#who").text == "boss")

    p.find("#new-clone").send_keys("anna")
    p.find("#create-clone").click()
    p.wait(lambda: p.find("h1").text == "anna")

    # Upload: both takes through the file picker (the drop zone's input); each streams with its progress bar.
    takes = [inputs / "host take 1.mp4", inputs / "host take 2.mp4"]
    p.find("#take-files").send_keys("\n".join(str(t) for t in takes))
    p.wait(lambda: len(p.all("tr.take")) == 2, 60, "both takes listed")
    assert sorted(p.name for p in (root / "raw" / "anna").iterdir()) == ["take-001.mp4", "take-002.mp4"]
    assert "host take 1.mp4" in p.find("#takes").text
    p.shot("02-footage", "#footage")

    # Consent, as a form; stored as the pipeline's own consent record.
    p.find("#person").send_keys("Anna Example")
    p.find("#recorded_by").send_keys("Studio 3")
    p.find("#use-pipeline_testing").click()
    p.find("#document").send_keys(str(inputs / "release.pdf"))
    p.shot("03-consent", "#consent")
    p.find("#save-consent").click()
    p.wait(lambda: "consent of Anna Example recorded" in p.find("#flash").text)
    record = consent.require_live(root, "anna", use="render")
    assert record.person == "Anna Example" and record.permitted_uses == ("pipeline_testing",)
    doc = yaml.safe_load((root / "raw" / "anna" / "consent.yaml").read_text())["document"]
    assert (root / "raw" / "anna" / doc).read_bytes().startswith(b"%PDF")

    # Check the footage: each take gets ingest's verdict.
    p.click_job("#check")
    p.wait_job("check")
    verdicts = [r.get_attribute("data-verdict") for r in p.all("tr.take")]
    assert verdicts == ["ok", "ok"], p.find("#takes").text
    assert "Verdict (footage check)" in p.find("#verdict").text
    p.shot("04-verdicts", "#footage")

    # Train (tiny budget), with progress stage by stage; then look at the clone.
    p.click_job("#train")
    p.wait(lambda: (p.job() or [None])[0] not in (None, p.before))
    if p.shots:  # the picture of training under way, when it can be caught
        from selenium.common.exceptions import TimeoutException
        with contextlib.suppress(TimeoutException):
            p.wait(lambda: "train: step" in p.find("#job-progress").text, 120)
        p.shot("05-training", "#job")
    p.wait_job("train")
    stages = {li.get_attribute("data-stage"): li.text for li in p.all("#job-stages li")}
    assert all(("done" in t or "up to date" in t) for t in stages.values()), stages
    for css in ("#heldout", "#preview", "#mouths", "#report"):
        assert p.all(css), css
    assert requests.get(p.find("#heldout").get_attribute("src"), cookies=_cookies(d)).headers["content-type"] == "video/mp4"
    p.shot("06-look", "#look")

    # Promote the version the page shows (the gate's reasons beside it).
    row = p.find('#version-table tr[data-version="v0001"]')
    assert row.get_attribute("data-status") == "candidate"
    # A clone trained for 4 steps is below the promotion floor: the gate says why, and promoting asks first.
    assert "below the promotion floor" in row.text
    p.shot("07-versions", "#versions")
    p.find("#promote-v0001").click()
    assert "Make v0001 live anyway?" in d.switch_to.alert.text
    d.switch_to.alert.accept()
    p.wait(lambda: "v0001 is live" in p.find("#flash").text)
    assert registry.live(root, "anna")[0] == "v0001"

    # Render new speech, then download the video and its provenance.
    p.find("#speech").send_keys(str(inputs / "speech.wav"))
    p.click_job("#start-render")
    p.wait_job("render", 180)
    link = p.find("#renders a.download")
    p.shot("08-render", "#render")
    video = tmp_path / "download.mp4"
    r = requests.get(link.get_attribute("href"), cookies=_cookies(d))
    assert r.status_code == 200 and "attachment" in r.headers["content-disposition"]
    video.write_bytes(r.content)
    info = ffmpeg.probe(str(video))
    prov = json.loads(info["format"]["tags"]["comment"])
    assert prov["ai_generated"] is True and prov["clone"] == "anna" and prov["version"] == "v0001"
    w, h = (int(info["streams"][0][k]) for k in ("width", "height"))
    frames = next(iter_frames(video, w, h, batch=10))
    assert_labelled(frames)
    side = requests.get(link.get_attribute("href").replace(".mp4", ".provenance.json"), cookies=_cookies(d)).json()
    assert side["video_sha256"] and side["label"] == "AI-generated"

    d.get(studio["url"] + "/")
    assert "v0001" in p.find("#clones").text and "in force" in p.find("#clones").text
    p.shot("09-clones")
    p.find("a.clone-link").click()
    p.wait(lambda: p.find("h1").text == "anna")

    # Revoking consent on the page stops every render at once.
    p.find("#revoke").click()
    d.switch_to.alert.accept()
    p.wait(lambda: "consent revoked" in p.find("#flash").text)
    assert registry.live(root, "anna") is None
    assert p.find("#consent-state").text.startswith("Consent: revoked")
    p.find("#speech").send_keys(str(inputs / "speech.wav"))
    p.find("#start-render").click()
    p.wait(lambda: p.all("#refusal"))
    assert "revoked" in p.find("#refusal").text

    # Every action is in the audit log: who, what, when.
    rows = [json.loads(line) for line in (root / "studio" / "audit.jsonl").read_text().splitlines()]
    done = {r["action"] for r in rows if r["user"] == "boss" and r["outcome"] == "ok"}
    assert any(r["action"] == "upload_take" and r["name"] == "host take 1.mp4" and r["stored"] == "take-001.mp4"
               for r in rows)
    assert {"login", "create_clone", "upload_take", "record_consent", "check_footage", "train", "promote", "render",
            "download", "revoke_consent"} <= done
    assert all(r["time"] for r in rows)


def _cookies(driver) -> dict:
    return {c["name"]: c["value"] for c in driver.get_cookies()}


# ---- hostile cases ---------------------------------------------------------------------------------------------

def test_an_upload_over_the_limit_is_refused(studio, hostile):
    too_big = b"\0" * ((MAX_UPLOAD_MB + 1) << 20)
    r = hostile.upload(hostile.clone, "big.mp4", too_big)  # says its length: refused before it is read
    assert r.status_code == 413 and "over the upload limit" in r.json()["error"]

    def stream():  # says nothing of its length: cut off once past the limit
        for _ in range(MAX_UPLOAD_MB + 1):
            yield b"\0" * (1 << 20)

    r = hostile.upload(hostile.clone, "big.mp4", stream())
    assert r.status_code == 413 and "larger than the upload limit" in r.json()["error"]
    assert not list((studio["root"] / "raw" / hostile.clone).iterdir())
    assert not list((studio["root"] / "studio" / "incoming").iterdir())


def test_a_non_video_is_refused_by_its_content_not_its_name(studio, hostile, footage):
    r = hostile.upload(hostile.clone, "take.mp4", (footage / "bad_not_a_video.mp4").read_bytes())
    assert r.status_code == 415 and "take.mp4" in r.json()["error"] and "not a video" in r.json()["error"]
    # A sound named like a video is stored as what ffprobe says it is (a take's sound), whatever its name says.
    r = hostile.upload(hostile.clone, "take.mp4", (studio["inputs"] / "speech.wav").read_bytes())
    assert r.status_code == 200 and r.json()["kind"] == "sound" and r.json()["stored"].endswith(".wav")
    (studio["root"] / "raw" / hostile.clone / r.json()["stored"]).unlink()
    assert not list((studio["root"] / "raw" / hostile.clone).iterdir())


def test_a_file_named_with_a_path_is_refused_and_nothing_lands_outside(studio, hostile):
    body = (studio["inputs"] / "host take 1.mp4").read_bytes()
    for name in ("../../x.mp4", "..\\..\\x.mp4", "/etc/x.mp4"):
        r = hostile.upload(hostile.clone, name, body)
        assert r.status_code == 400 and "is not allowed" in r.json()["error"], (name, r.text)
    # Up to two folders above raw/<clone>/ (the data root, the test's folder) and beside it: no x.mp4 anywhere.
    assert not list(studio["base"].rglob("x.mp4")) and not (studio["base"].parent / "x.mp4").exists()
    assert not list((studio["root"] / "raw" / hostile.clone).iterdir())
    # A clone id that is a path is refused too.
    r = hostile.upload("a..b", "x.mp4", body)
    assert r.status_code == 400 and "clone id 'a..b' is not allowed" in r.json()["error"]


def test_a_user_without_the_role_cannot_promote(studio, hostile):
    ulla = Client(studio["url"], "ulla")  # upload only
    r = ulla.post(f"/clones/{hostile.clone}/versions/v0001/promote")
    assert r.status_code == 403 and "ulla may not promote versions" in r.text and "'approve' role" in html.unescape(r.text)
    rita = Client(studio["url"], "rita")  # render only: may not upload either
    r = rita.upload(hostile.clone, "take.mp4", b"x")
    assert r.status_code == 403 and "may not upload footage" in r.json()["error"]
    rows = [json.loads(line) for line in (studio["root"] / "studio" / "audit.jsonl").read_text().splitlines()]
    assert any(r["user"] == "ulla" and r["action"] == "promote" and r["outcome"] == "refused" for r in rows)


def test_every_post_without_its_csrf_token_is_refused(studio, hostile):
    posts = [r.path for r in ROUTES if "POST" in (getattr(r, "methods", None) or ())]
    assert len(posts) >= 10
    before = _files(studio["root"] / "raw")
    for path in posts:
        url = path.format(clone=hostile.clone, version="v0001", file="take-001.mp4")
        for headers in ({}, {"X-CSRF-Token": "forged"}):
            r = hostile.s.post(studio["url"] + url, data={"clone": "x", "user": "boss", "csrf": "forged"}
                               if headers else {"clone": "x", "user": "boss"}, headers=headers, allow_redirects=False)
            assert r.status_code == 403 and "CSRF token" in r.text, (url, r.status_code, r.text[:300])
    assert _files(studio["root"] / "raw") == before


def test_two_uploads_to_one_clone_at_once(studio, hostile):
    body = (studio["inputs"] / "host take 2.mp4").read_bytes()
    half = len(body) // 2
    go_on, started = threading.Event(), threading.Event()

    def slow():
        yield body[:half]
        started.set()
        go_on.wait(30)
        yield body[half:]

    first: dict = {}
    t = threading.Thread(target=lambda: first.setdefault("r", hostile.upload(hostile.clone, "slow.mp4", slow())))
    t.start()
    assert started.wait(30)
    # The server holds the clone's upload lock once the first upload's file is open in incoming/ (tests run one at
    # a time, so it is the only one there).
    incoming, deadline = studio["root"] / "studio" / "incoming", time.monotonic() + 30
    while not (incoming.is_dir() and list(incoming.glob("*.part"))):
        assert time.monotonic() < deadline, "the first upload never reached the server"
        time.sleep(0.05)
    r = hostile.upload(hostile.clone, "second.mp4", (studio["inputs"] / "host take 1.mp4").read_bytes())
    go_on.set()
    t.join(30)
    assert r.status_code == 409 and f"another upload to clone '{hostile.clone}' is in progress" in r.json()["error"]
    assert first["r"].status_code == 200, first["r"].text
    assert [p.name for p in (studio["root"] / "raw" / hostile.clone).iterdir()] == [first["r"].json()["stored"]]


def test_nothing_was_written_outside_the_data_root(studio, hostile):
    # The server's $TMPDIR is outside the root; form uploads and jobs' temporary files go inside it instead.
    r = hostile.post(f"/clones/{hostile.clone}/consent", data={"person": "P", "recorded_by": "R", "date": "2026-01-01",
                                                      "expires": "2099-01-01", "permitted_uses": "research"},
                     files={"document": ("release.pdf", b"%PDF-1.4 " + b"x" * 2_000_000)})
    assert r.status_code == 303, r.text
    r = hostile.post(f"/clones/{hostile.clone}/consent", data={"person": "P", "recorded_by": "R", "date": "2026-01-01",
                                                      "expires": "2099-01-01", "permitted_uses": "research"},
                     files={"document": ("release.exe", b"MZ\x90\x00" + b"x" * 100)})
    assert r.status_code == 415 and "not a PDF" in r.text
    # A field that would smuggle a line into the YAML record is refused.
    r = hostile.post(f"/clones/{hostile.clone}/consent", data={"person": "P\nrevoked: 2020-01-01", "recorded_by": "R",
                                                      "date": "2026-01-01", "expires": "2099-01-01",
                                                      "permitted_uses": "research"},
                     files={"document": ("release.pdf", b"%PDF-1.4 signed")})
    assert r.status_code == 400 and "line break" in r.text
    assert consent.require_live(studio["root"], hostile.clone, use="train").revoked is None
    assert not list(studio["outside"].iterdir())


def test_a_failed_stage_shows_its_error_and_fix(studio, hostile):
    # One 9 s take: too little footage to ingest (ingest.min_duration_s is 10 s).
    assert hostile.post("/clones", data={"clone": "short"}).status_code == 303
    assert hostile.upload("short", "t.mp4", (studio["inputs"] / "host take 1.mp4").read_bytes()).status_code == 200
    r = hostile.post("/clones/short/consent", data={"person": "P", "recorded_by": "R", "date": "2026-01-01",
                                                    "expires": "2099-01-01", "permitted_uses": "research"},
                     files={"document": ("release.pdf", b"%PDF-1.4 signed")})
    assert r.status_code == 303, r.text
    r = hostile.post("/clones/short/check")
    assert r.status_code == 303
    job = re.search(r'data-job="([0-9a-f]+)"', hostile.s.get(studio["url"] + "/clones/short").text).group(1)
    deadline = time.monotonic() + 120
    while (status := hostile.s.get(f"{studio['url']}/jobs/{job}").json())["state"] == "running":
        assert time.monotonic() < deadline
        time.sleep(0.5)
    assert status["state"] == "failed" and status["stages"]["ingest"] == "failed", status
    assert "10 s" in status["error"] and status["fix"], status
    page = html.unescape(hostile.s.get(studio["url"] + "/clones/short").text)
    assert status["error"] in page and status["fix"] in page


def test_passwords_and_settings(tmp_path):
    from clonetrain.studio import settings

    stored = auth.hash_password("s3cret", n=2**10)
    assert stored.startswith("scrypt$") and "s3cret" not in stored
    assert auth.verify_password("s3cret", stored) and not auth.verify_password("s3cret ", stored)
    path = tmp_path / "studio.yaml"
    settings.add_user(path, "anna", ["upload", "render"], stored)
    s = settings.load(path)
    assert s.host == "127.0.0.1" and s.users["anna"].may("render") and not s.users["anna"].may("approve")
    assert auth.check_login(s.users, "anna", "s3cret") is s.users["anna"]
    assert auth.check_login(s.users, "anna", "wrong") is None and auth.check_login(s.users, "nobody", "s3cret") is None
    with pytest.raises(settings.SettingsError, match="unknown role"):
        settings.add_user(path, "bob", ["root"], stored)
    path.write_text("users: {bob: {roles: [superuser], password: x}}\n")
    with pytest.raises(settings.SettingsError, match="unknown role"):
        settings.load(path)


def test_a_video_and_its_separate_sound_are_paired_by_name(studio, hostile, footage):
    assert hostile.post("/clones", data={"clone": "split"}).status_code == 303
    r = hostile.upload("split", "Interview.WAV", (footage / "split_woman_10s.wav").read_bytes())
    assert r.status_code == 200 and r.json()["stored"] == "take-001.wav"
    r = hostile.upload("split", "interview.mp4", (footage / "split_woman_no_audio_10s.mp4").read_bytes())
    assert r.status_code == 200 and r.json()["stored"] == "take-001.mp4" and "no sound track" in r.json()["note"]
    r = hostile.upload("split", "again.mp4", (footage / "split_woman_no_audio_10s.mp4").read_bytes())
    assert r.status_code == 409 and "already uploaded" in r.json()["error"]
    assert sorted(p.name for p in (studio["root"] / "raw" / "split").iterdir()) == ["take-001.mp4", "take-001.wav"]
    # Taken out again: set aside, not deleted.
    assert hostile.post("/clones/split/takes/take-001.wav/remove").status_code == 303
    assert [p.name for p in (studio["root"] / "raw" / "split").iterdir()] == ["take-001.mp4"]
    kept = list((studio["root"] / "studio" / "removed" / "split").iterdir())
    assert len(kept) == 1 and kept[0].read_bytes() == (footage / "split_woman_10s.wav").read_bytes()
    assert hostile.post("/clones/split/takes/consent.yaml/remove").status_code == 404


def test_a_consent_for_research_only_renders_nothing(studio, hostile):
    r = hostile.post(f"/clones/{hostile.clone}/consent", data={"person": "P", "recorded_by": "R", "date": "2026-01-01",
                                                      "expires": "2099-01-01", "permitted_uses": "research"},
                     files={"document": ("release.png", b"\x89PNG\r\n\x1a\n" + b"x" * 100)})
    assert r.status_code == 303, r.text
    r = hostile.post(f"/clones/{hostile.clone}/render", files={"speech": ("s.wav", (studio["inputs"] / "speech.wav").read_bytes())})
    assert r.status_code == 403 and "does not permit 'render'" in html.unescape(r.text)
    assert not (studio["root"] / "renders" / hostile.clone).exists()
    assert not (studio["root"] / "studio" / "speech" / hostile.clone).exists()


CONSENT_FORM = {"recorded_by": "R", "date": "2026-01-01", "expires": "2099-01-01", "permitted_uses": "research"}


def test_a_revoked_consent_comes_back_only_with_a_new_signed_document(studio, hostile):
    clone, raw = hostile.clone, studio["root"] / "raw" / hostile.clone
    form = f"/clones/{clone}/consent"
    r = hostile.post(form, data={"person": "P", **CONSENT_FORM}, files={"document": ("release.pdf", b"%PDF-1.4 P")})
    assert r.status_code == 303, r.text
    # A renewal by the same person keeps the document on file; another person's consent needs their own.
    r = hostile.post(form, data={"person": "P", **CONSENT_FORM, "expires": "2098-01-01"})
    assert r.status_code == 303, r.text
    r = hostile.post(form, data={"person": "Q", **CONSENT_FORM})
    assert r.status_code == 400 and "not Q's" in html.unescape(r.text)
    assert consent.require_live(studio["root"], clone, use="train").person == "P"
    assert hostile.post(f"/clones/{clone}/consent/revoke").status_code == 303
    before = {p.name: p.read_bytes() for p in raw.iterdir()}
    # After a revocation, the same form without a new signed document is refused, and nothing is written.
    for person in ("P", "Q"):
        r = hostile.post(form, data={"person": person, **CONSENT_FORM})
        assert r.status_code == 400 and "a new signed consent document is needed" in r.text, r.text
    assert {p.name: p.read_bytes() for p in raw.iterdir()} == before
    with pytest.raises(consent.ConsentError, match="revoked"):
        consent.require_live(studio["root"], clone, use="train")
    r = hostile.post(form, data={"person": "P", **CONSENT_FORM}, files={"document": ("release.pdf", b"%PDF-1.4 new")})
    assert r.status_code == 303, r.text
    assert consent.require_live(studio["root"], clone, use="train").revoked is None


def _consent_root(tmp_path: Path, clone: str) -> Path:
    raw = tmp_path / "raw" / clone
    raw.mkdir(parents=True)
    (raw / "consent.yaml").write_text("person: P\nrecorded_by: R\ndate: 2026-01-01\nexpires: 2099-01-01\n"
                                      "permitted_uses: [livestream_commerce]\n")
    return tmp_path


def test_a_render_finished_after_a_revocation_is_not_delivered(tmp_path):
    from clonetrain.stages.render import finish

    root = _consent_root(tmp_path, "anna")
    out = root / "renders" / "anna" / "speech.mp4"
    out.parent.mkdir(parents=True)
    check = lambda: consent.require_live(root, "anna", use="render")  # noqa: E731 - what render.run passes
    tmp = out.with_name(".speech.1.rendering.mp4")
    tmp.write_bytes(b"video")
    assert finish(tmp, out, False, False, check) == out and out.read_bytes() == b"video" and not tmp.exists()
    consent.revoke(root, "anna")  # while the second render was being made
    tmp.write_bytes(b"video 2")
    with pytest.raises(consent.ConsentError, match="revoked"):
        finish(tmp, out, False, False, check)
    assert not tmp.exists() and sorted(p.name for p in out.parent.iterdir()) == ["speech.mp4"]


def _group_alive(pgid: int) -> bool:
    try:
        os.killpg(pgid, 0)
    except ProcessLookupError:
        return False
    return True


def test_revoking_stops_the_clones_running_jobs(tmp_path):
    from clonetrain.studio.jobs import Jobs

    jobs = Jobs(tmp_path, tmp_path / "studio", ())
    # A job that would run for minutes, with a child of its own (as ffmpeg or a data-loader worker would be).
    script = "import subprocess, time; subprocess.Popen(['sleep', '120']); print('working', flush=True); time.sleep(120)"
    jobs.command = lambda kind, clone, extra: [sys.executable, "-c", script]
    job, other = jobs.start("render", "anna", "ulla"), jobs.start("render", "bert", "ulla")
    log = tmp_path / "studio" / "jobs" / f"{job['id']}.log"
    deadline = time.monotonic() + 30
    while "working" not in (log.read_text() if log.exists() else ""):
        assert time.monotonic() < deadline
        time.sleep(0.05)
    half_done = tmp_path / "renders" / "anna" / f".speech.{job['pid']}.rendering.mp4"  # as render.py names it
    half_done.parent.mkdir(parents=True)
    half_done.write_bytes(b"half a video")
    assert jobs.stop_clone("anna", "consent revoked by boss") == [job["id"]]
    assert not half_done.exists()
    deadline = time.monotonic() + 10
    while _group_alive(job["pid"]):  # the whole process group goes, the child included (once its zombie is reaped)
        assert time.monotonic() < deadline, "a process of the stopped job is still running"
        time.sleep(0.05)
    while (status := jobs.status(job["id"]))["state"] == "running":
        assert time.monotonic() < deadline
        time.sleep(0.05)
    assert status["state"] == "stopped" and status["error"] == "stopped: consent revoked by boss", status
    assert jobs.running("anna") is None and jobs.running("bert")["id"] == other["id"]  # another clone's job runs on
    jobs.stop_all()


@pytest.mark.parametrize("clone", ["0.10", "1e5", "true", "null", "anna_01", "x-1.0"])
def test_a_jobs_clone_reaches_hydra_as_the_same_string(tmp_path, clone):
    from hydra.core.override_parser.overrides_parser import OverridesParser

    from clonetrain.studio.jobs import JobError, Jobs, override

    root = tmp_path / "a,b"  # a comma in a root path would make a Hydra sweep: it goes as $CLONETRAIN_DATA instead
    cmd = Jobs(root, root / "studio", ()).command("render", clone, [override("audio", "studio/speech/x.wav")])
    parsed = {o.key_or_group: o.value() for o in OverridesParser.create().parse_overrides(cmd[3:])}
    assert parsed["clone"] == clone and parsed["audio"] == "studio/speech/x.wav" and "paths.root" not in parsed
    with pytest.raises(JobError):
        override("audio", "it's.wav")


def test_small_bodies_plain_links_and_signing_out(studio, hostile):
    # A body that is not multipart holds only fields: over 64 KB it is refused before it is read.
    r = hostile.post("/clones", data={"clone": "x" * 70_000})
    assert r.status_code == 413 and "64 KB" in r.text, r.text[:300]
    # The refusal page's way back is a plain link: the page's CSP blocks a javascript: one.
    r = hostile.post(f"/clones/{hostile.clone}/versions/v0001/promote")
    assert r.status_code == 404 and f'href="/clones/{hostile.clone}"' in r.text and "javascript:" not in r.text
    # Whoever is signed in may sign out, a user without any role too.
    nora = Client(studio["url"], "nora")
    r = nora.post("/logout")
    assert r.status_code == 303 and r.headers["location"] == "/login", r.text[:300]
    assert nora.s.get(studio["url"] + "/", allow_redirects=False).headers["location"] == "/login"


def test_ffprobe_reads_an_upload_under_a_time_limit(footage, monkeypatch):
    from clonetrain.studio import uploads

    assert uploads.inspect_take(footage / "talk_man_60s.mp4", "t.mp4")[0] == ".mp4"
    monkeypatch.setattr(uploads, "PROBE_TIMEOUT_S", 1e-6)  # as if ffprobe hung on a crafted file
    with pytest.raises(uploads.UploadError, match="did not finish reading it"):
        uploads.inspect_take(footage / "talk_man_60s.mp4", "t.mp4")


def test_a_job_log_s_progress_lines_reach_the_page():
    """The page reads progress from the job's log, written in Hydra's log format by the real progress logger:
    the parser must follow the logger wherever its module lives."""
    import io
    import logging

    from clonetrain.core.progress import Progress, log
    from clonetrain.studio.jobs import parse_log

    out = io.StringIO()
    handler = logging.StreamHandler(out)
    handler.setFormatter(logging.Formatter("[%(asctime)s][%(name)s][%(levelname)s] - %(message)s"))  # Hydra's
    log.addHandler(handler)
    level, log.level = log.level, logging.INFO
    try:
        with Progress("train", 10, "steps", every_s=0, bar=False) as bar:
            bar.update(3)
    finally:
        log.removeHandler(handler)
        log.level = level
    parsed = parse_log(out.getvalue(), "train", None)
    assert parsed["progress"] and parsed["progress"].startswith("train: ")
