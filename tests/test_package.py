"""Packages: written, registered, loaded and verified without training code; tampering and unsafe archives refused;
render from a package alone."""

import io
import json
import shutil
import tarfile

import ffmpeg
import pytest
import torch

from clonetrain import package, registry
from conftest import TINY, ffmpeg as run_ffmpeg, run


@pytest.fixture(scope="module")
def packaged(trained, tmp_path_factory):
    root = tmp_path_factory.mktemp("pkg") / "data"
    shutil.copytree(trained, root, symlinks=True)
    run(root, "man", "stage=package", *TINY)
    return root


def test_package_is_complete_and_registered(packaged):
    folder = packaged / "clones" / "man" / "v0001"
    p = package.load(folder)
    m = p.manifest
    assert p.clone == "man" and p.version == "v0001"
    for name in ("model.safetensors", "generator.torchscript", "consent.json", "voice_profile.json", "metrics.json",
                 "config.yaml", "model_card.md", "avatar/footage.mp4", "avatar/footage.npz", "avatar/paste_mask.png",
                 "avatar/reference.png", "avatar/motion.json"):
        assert name in m["files"], name
    assert m["source_takes"][0]["file"] == "take1.mp4" and len(m["source_takes"][0]["sha256"]) == 64
    assert m["versions"]["torch"] and m["consent_sha256"] == package.sha256(folder / "consent.json")
    segments = json.loads((folder / "avatar" / "motion.json").read_text())["segments"]
    assert "talking" in {s["speech"] for s in segments}
    # The library tiles the packaged footage (render.footage_seconds=4 in TINY) with entry and exit poses.
    assert segments[0]["start"] == 0 and segments[-1]["end"] == m["avatar"]["footage_frames"] == 100
    assert all(len(s["entry"]["pose"]) == 3 and len(s["exit"]["box"]) == 3 for s in segments)
    assert "AI-generated" in (folder / "model_card.md").read_text()
    entry = registry.read(packaged)["clones"]["man"]["versions"]["v0001"]
    assert entry["status"] == "candidate" and entry["path"] == "clones/man/v0001"
    assert (packaged / "clones" / "man" / "man-v0001.tar.gz").is_file()


def test_exported_graph_runs_without_clonetrain(packaged):
    graph = torch.jit.load(str(packaged / "clones" / "man" / "v0001" / "generator.torchscript"))
    out = graph(torch.rand(1, 6, 96, 96), torch.rand(1, 1, 80, 16))
    assert out.shape == (1, 3, 96, 96) and 0 <= out.min() and out.max() <= 1


def test_archive_round_trip(packaged, tmp_path):
    archive = tmp_path / "man-v0001.tar.gz"
    shutil.copy(packaged / "clones" / "man" / "man-v0001.tar.gz", archive)
    p = package.load(archive)
    assert p.path == tmp_path / "man-v0001" and p.version == "v0001"


def test_tampered_or_truncated_files_are_refused(packaged, tmp_path):
    folder = tmp_path / "v"
    shutil.copytree(packaged / "clones" / "man" / "v0001", folder)
    metrics = folder / "metrics.json"
    metrics.write_text(metrics.read_text().replace("lmd_mouth", "lmd_mouti"))
    with pytest.raises(package.PackageError, match="metrics.json was changed after packaging"):
        package.load(folder)
    shutil.copy(packaged / "clones" / "man" / "v0001" / "metrics.json", metrics)
    model = folder / "model.safetensors"
    model.write_bytes(model.read_bytes()[:1000])
    with pytest.raises(package.PackageError, match="model.safetensors has 1000 bytes"):
        package.load(folder)
    model.unlink()
    with pytest.raises(package.PackageError, match="incomplete: missing model.safetensors"):
        package.load(folder)


def test_archive_that_escapes_its_folder_is_refused(tmp_path):
    evil = tmp_path / "evil.tar.gz"
    with tarfile.open(evil, "w:gz") as tar:
        data = b"pwned"
        info = tarfile.TarInfo("../../outside.txt")
        info.size = len(data)
        tar.addfile(info, io.BytesIO(data))
    with pytest.raises(package.PackageError, match="outside"):
        package.load(evil)
    assert not (tmp_path.parent / "outside.txt").exists()
    link = tmp_path / "link.tar.gz"
    with tarfile.open(link, "w:gz") as tar:
        info = tarfile.TarInfo("pkg/model.safetensors")
        info.type, info.linkname = tarfile.SYMTYPE, "/etc/passwd"
        tar.addfile(info)
    with pytest.raises(package.PackageError, match="link or device"):
        package.load(link)


def test_render_from_the_package_alone(packaged, footage, tmp_path):
    root = tmp_path / "only_package"
    shutil.copytree(packaged / "clones", root / "clones")
    shutil.copy(packaged / "registry.json", root / "registry.json")
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
