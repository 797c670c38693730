"""Packages: written, registered, loaded and verified without training code; tampering and unsafe archives refused;
render from a package alone."""

import io
import json
import shutil
import tarfile

import ffmpeg
import pytest
import torch

from clonetrain.product import clone_package, registry
from clonetrain.audio_analysis.model_input import FeatureSpec
from clonetrain.contract.clip import load_clip
from clonetrain.core.workspace import Workspace
from conftest import TINY, ffmpeg as run_ffmpeg, run


@pytest.fixture(scope="module")
def packaged(trained, module_scratch):
    root = module_scratch / "data"
    shutil.copytree(trained, root, symlinks=True)
    run(root, "man", "stage=package", *TINY)
    return root


def test_package_is_complete_and_registered(packaged):
    folder = packaged / "clones" / "man" / "v0001"
    p = clone_package.load(folder)
    m = p.manifest
    assert p.clone == "man" and p.version == "v0001"
    for name in ("model.safetensors", "generator.torchscript", "consent.json", "voice_profile.json", "metrics.json",
                 "config.yaml", "model_card.md", "avatar/footage.mp4", "avatar/footage.npz", "avatar/paste_mask.png",
                 "avatar/reference.png", "avatar/motion.json", "avatar/mouth_bank.npz"):
        assert name in m["files"], name
    assert m["source_takes"][0]["file"] == "take1.mp4" and len(m["source_takes"][0]["sha256"]) == 64
    assert m["versions"]["torch"] and m["consent_sha256"] == clone_package.sha256(folder / "consent.json")
    segments = json.loads((folder / "avatar" / "motion.json").read_text())["segments"]
    assert "talking" in {s["speech"] for s in segments}
    # The library tiles the packaged footage (render.footage_seconds=4 in TINY) with entry and exit poses.
    assert segments[0]["start"] == 0 and segments[-1]["end"] == m["avatar"]["footage_frames"] == 100
    assert all(len(s["entry"]["pose"]) == 3 and len(s["exit"]["box"]) == 3 for s in segments)
    assert "AI-generated" in (folder / "model_card.md").read_text()
    # What a runtime outside clonetrain needs to reproduce the model's input: the FeatureSpec training used, with
    # its normalisation and window (here the default, Whisper base layer 2: x / 0.4, 10 frames = 0.2 s).
    spec = FeatureSpec.from_dict(m["audio"])
    assert spec == load_clip(Workspace(packaged, "man"), 96).features
    assert (spec.encoder, spec.layers, spec.dims) == ("whisper", (2,), 512)
    assert (spec.center, spec.scale, spec.window, spec.per_second) == (0.0, 0.4, 10, 50.0)
    assert "| output | mouth LMD (lower is better) | mouth-opening r | offset (frames) |" in (
        folder / "model_card.md").read_text()
    entry = registry.read(packaged)["clones"]["man"]["versions"]["v0001"]
    assert entry["status"] == "candidate" and entry["path"] == "clones/man/v0001"
    assert (packaged / "clones" / "man" / "man-v0001.tar.gz").is_file()


def test_exported_graph_runs_without_clonetrain(packaged):
    folder = packaged / "clones" / "man" / "v0001"
    graph = torch.jit.load(str(folder / "generator.torchscript"))
    heard = json.loads((folder / "manifest.json").read_text())["audio"]  # what a runtime reads to feed it
    out = graph(torch.rand(1, 6, 96, 96), torch.rand(1, 1, heard["dims"], heard["window"]))
    assert out.shape == (1, 3, 96, 96) and 0 <= out.min() and out.max() <= 1


def test_archive_round_trip(packaged, tmp_path):
    archive = tmp_path / "man-v0001.tar.gz"
    shutil.copy(packaged / "clones" / "man" / "man-v0001.tar.gz", archive)
    p = clone_package.load(archive)
    assert p.path == tmp_path / "man-v0001" and p.version == "v0001"


def test_tampered_or_truncated_files_are_refused(packaged, tmp_path):
    folder = tmp_path / "v"
    shutil.copytree(packaged / "clones" / "man" / "v0001", folder)
    metrics = folder / "metrics.json"
    metrics.write_text(metrics.read_text().replace("lmd_mouth", "lmd_mouti"))
    with pytest.raises(clone_package.PackageError, match="metrics.json was changed after packaging"):
        clone_package.load(folder)
    shutil.copy(packaged / "clones" / "man" / "v0001" / "metrics.json", metrics)
    model = folder / "model.safetensors"
    model.write_bytes(model.read_bytes()[:1000])
    with pytest.raises(clone_package.PackageError, match="model.safetensors has 1000 bytes"):
        clone_package.load(folder)
    model.unlink()
    with pytest.raises(clone_package.PackageError, match="incomplete: missing model.safetensors"):
        clone_package.load(folder)


def test_archive_that_escapes_its_folder_is_refused(tmp_path):
    evil = tmp_path / "evil.tar.gz"
    with tarfile.open(evil, "w:gz") as tar:
        data = b"pwned"
        info = tarfile.TarInfo("../../outside.txt")
        info.size = len(data)
        tar.addfile(info, io.BytesIO(data))
    with pytest.raises(clone_package.PackageError, match="outside"):
        clone_package.load(evil)
    assert not (tmp_path.parent / "outside.txt").exists()
    link = tmp_path / "link.tar.gz"
    with tarfile.open(link, "w:gz") as tar:
        info = tarfile.TarInfo("pkg/model.safetensors")
        info.type, info.linkname = tarfile.SYMTYPE, "/etc/passwd"
        tar.addfile(info)
    with pytest.raises(clone_package.PackageError, match="link or device"):
        clone_package.load(link)


def test_render_from_the_package_alone(packaged, footage, tmp_path):
    root = tmp_path / "only_package"
    shutil.copytree(packaged / "clones", root / "clones")
    shutil.copy(packaged / "registry.db", root / "registry.db")
    (root / "raw" / "man").mkdir(parents=True)  # the live consent record: the runtime's one need beyond the package
    shutil.copy(packaged / "raw" / "man" / "consent.yaml", root / "raw" / "man" / "consent.yaml")
    registry.promote(root, "man", "v0001", "test")
    speech = tmp_path / "s.wav"
    run_ffmpeg("-i", str(footage / "driving_speech_en_60s.wav"), "-t", "2", str(speech))
    out = tmp_path / "r.mp4"
    # No raw footage, no work folder: only the package is there.
    run(root, "man", "stage=render", f"audio={speech}", f"render.out={out}", *TINY)
    info = ffmpeg.probe(str(out))
    assert abs(float(info["format"]["duration"]) - 2.0) < 0.1
    meta = json.loads(info["format"]["tags"]["comment"])
    assert meta["version"] == "v0001" and meta["ai_generated"]
    assert not (root / "work").exists() or not any((root / "work").rglob("*.npy"))


def test_extraction_never_touches_an_existing_folder(packaged, tmp_path):
    good = tmp_path / "man-v0001"
    shutil.copytree(packaged / "clones" / "man" / "v0001", good)
    before = clone_package.file_table(good)
    archive = tmp_path / "man-v0001.tar.gz"
    shutil.copy(packaged / "clones" / "man" / "man-v0001.tar.gz", archive)
    assert clone_package.load(archive).path == good  # the same package, already extracted: reused, not re-extracted
    # A tampered archive beside the good folder: refused, and the good folder is exactly as it was.
    with tarfile.open(archive) as src, tarfile.open(tmp_path / "bad.tar.gz", "w:gz") as dst:
        for m in src.getmembers():
            data = src.extractfile(m).read() if m.isfile() else None
            if m.name.endswith("metrics.json"):
                data = data.replace(b"lmd_mouth", b"lmd_mouti")
                m.size = len(data)
            dst.addfile(m, io.BytesIO(data) if data is not None else None)
    (tmp_path / "bad.tar.gz").replace(archive)
    with pytest.raises(clone_package.PackageError, match="metrics.json was changed"):
        clone_package.load(archive)
    assert clone_package.file_table(good) == before and clone_package.verify(good)
    assert not list(tmp_path.glob(".*extracting*"))  # no leftover scratch folder, refused or not
    # A different package in the way: refused, both left alone.
    (good / "model_card.md").write_text("edited by hand")
    shutil.copy(packaged / "clones" / "man" / "man-v0001.tar.gz", archive)
    with pytest.raises(clone_package.PackageError, match="already exists and is not this archive's package"):
        clone_package.load(archive)
    assert (good / "model_card.md").read_text() == "edited by hand"


def test_a_damaged_manifest_is_a_package_error(packaged, tmp_path):
    folder = tmp_path / "v"
    shutil.copytree(packaged / "clones" / "man" / "v0001", folder)
    manifest = json.loads((folder / "manifest.json").read_text())
    del manifest["files"]
    (folder / "manifest.json").write_text(json.dumps(manifest))
    with pytest.raises(clone_package.PackageError, match="no valid 'files' table"):
        clone_package.load(folder)
    (folder / "manifest.json").write_text("[1, 2]")
    with pytest.raises(clone_package.PackageError, match="not a JSON object"):
        clone_package.load(folder)


def _forge(folder):
    """Extend the consent inside a package and recompute every hash in its manifest: what a forger would do."""
    c = json.loads((folder / "consent.json").read_text())
    c["expires"] = "2999-01-01"
    (folder / "consent.json").write_text(json.dumps(c))
    m = json.loads((folder / "manifest.json").read_text())
    m["files"] = clone_package.file_table(folder)
    m["consent_sha256"] = clone_package.sha256(folder / "consent.json")
    (folder / "manifest.json").write_text(json.dumps(m))
    clone_package.verify(folder)  # every checksum matches: only the registry (or a signature) can tell


def test_a_forged_package_is_refused_by_the_registry_or_the_signing_key(packaged, tmp_path, monkeypatch):
    folder = tmp_path / "v0001"
    shutil.copytree(packaged / "clones" / "man" / "v0001", folder)
    assert registry.check_trusted(packaged, clone_package.load(folder)) == "registry"
    _forge(folder)
    with pytest.raises(clone_package.PackageError, match="not the man v0001 this studio published"):
        registry.check_trusted(packaged, clone_package.load(folder))
    # With a studio key, a signed package is trusted beyond this registry; a forged one is not.
    key = tmp_path / "studio.key"
    key.write_bytes(b"k" * 32)
    monkeypatch.setenv(clone_package.SIGNING_KEY_ENV, str(key))
    signed = tmp_path / "signed" / "v0001"
    shutil.copytree(packaged / "clones" / "man" / "v0001", signed)
    clone_package.sign(signed, key.read_bytes())
    empty_root = tmp_path / "other_studio"
    assert registry.check_trusted(empty_root, clone_package.load(signed)) == "signature"
    sig = (signed / clone_package.SIGNATURE).read_text()
    _forge(signed)
    (signed / clone_package.SIGNATURE).write_text(sig)
    with pytest.raises(clone_package.PackageError, match="no valid studio signature"):
        registry.check_trusted(empty_root, clone_package.load(signed))


def test_leftovers_of_a_killed_publish_are_reconciled_on_the_next_run(packaged, tmp_path):
    import os

    root = tmp_path / "data"
    shutil.copytree(packaged, root, symlinks=True)
    clones = root / "clones" / "man"
    # Killed after publishing v0001 but before registering it, and other leftovers of killed or refused runs.
    (root / "registry.db").unlink()
    (clones / "man-v0001.tar.gz").replace(clones / ".man-v0001.tar.gz.tmp")
    (clones / ".v0002.tmp").mkdir()
    scratch = clones / ".man-v0001.extracting-abc"
    scratch.mkdir()
    os.utime(scratch, (1, 1))
    half = clones / "v0003"
    half.mkdir()
    (half / "model.safetensors").write_bytes(b"half")
    statuses = run(root, "man", "stage=package", *TINY)
    assert statuses == {"package": "skipped"}
    entry = registry.read(root)["clones"]["man"]["versions"]["v0001"]
    assert entry["status"] == "candidate" and "adopted" in entry["reason"]
    assert registry.check_trusted(root, clone_package.load(clones / "v0001")) == "registry"
    assert (clones / "man-v0001.tar.gz").is_file() and clone_package.load(clones / "man-v0001.tar.gz")
    left = sorted(p.name for p in clones.iterdir())
    assert left == ["man-v0001", "man-v0001.tar.gz", "v0001"], left  # man-v0001/: the load just above
