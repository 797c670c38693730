"""A pretraining corpus from an archive of talking-head clips: every clip becomes a clone of its own, is
preprocessed like any clone, and is kept only where its sound is in sync with its face.

Whether each voice belongs to the face shown is not known for an archive gathered from many sources (a dubbed
clip, a voice-over, music). The audio stage's offset estimate answers it: a clip whose mouth follows its sound
has a clear correlation peak (audio_features.min_peak_margin) near lag 0. Clips without one would teach the base
that mouths move at random, so they are dropped and the report says why (as LatentSync gates its data on
SyncNet confidence).

    python -m clonetrain corpus ARCHIVE --base base --consent archive_consent.yaml [--exclude 'talk_*'] \
        [--root data] [--pretrain] [hydra overrides, e.g. audio_features.encoder=whisper]

Writes raw/<base>-<clip>/ (the clip, hard-linked or copied, the archive's consent record and corpus_clip.json, which
marks the folder as pretraining material: the nightly run and the studio's page leave it alone), the clones'
preprocessed work folders, and work/<base>/corpus/corpus.json: every clip with its verdict. With --pretrain it
then runs stage=pretrain for the base on the kept clips. Rerun it as the archive grows: clips already
preprocessed are skipped like any up-to-date stage, a broken clip is reported and skipped.
"""

from __future__ import annotations

import argparse
import fnmatch
import logging
import os
import re
import shutil
import sys
from pathlib import Path

from clonetrain.contract import files
from clonetrain.core.errors import ClonetrainError
from clonetrain.core.workspace import Workspace, atomic_path, validate_clone_id, write_json_atomic

log = logging.getLogger("clonetrain.product.corpus")

VIDEO_EXTENSIONS = (".mp4", ".mov", ".mkv", ".webm", ".avi", ".m4v")
# What a pretraining clip needs of the pipeline: no transcript, no voice, no report.
PREPROCESS = ("ingest", "faces", "landmarks", "audio")
# Archives hold short clips (most 3-15 s): a clone needs about a minute, one clip of a base does not. The offset
# of a short clip with a clear peak is measurable, and a base learns sync from it: correct every whole frame.
# Given first, so the command line's own overrides win.
DEFAULTS = ["ingest.min_duration_s=3", "ingest.min_speech_s=3", "audio_features.min_speech_for_offset_s=3",
            "audio_features.correct_beyond_frames=0"]


# Beside a corpus clip in its raw/ folder: {"base", "clip"}. A corpus clip is pretraining material, not a clone a
# studio ships, so the nightly run does not train it (unless named in nightly.clones) and the studio's page does
# not list it.
CLIP_MARKER = "corpus_clip.json"


def is_corpus_clip(raw_dir: Path) -> bool:
    """Whether raw/<clone>/ was made by the corpus command for pretraining (it holds CLIP_MARKER)."""
    return (Path(raw_dir) / CLIP_MARKER).is_file()


def clip_clone_id(base: str, clip: Path) -> str:
    """raw/<base>-<stem>: a clone id made from the file name (anything outside [A-Za-z0-9_.-] becomes '_')."""
    stem = re.sub(r"[^A-Za-z0-9_.-]+", "_", clip.stem).strip("._-") or "clip"
    return validate_clone_id(f"{base}-{stem}"[:64])


def archive_clips(archive: Path, exclude: list[str]) -> list[Path]:
    if not archive.is_dir():
        raise ClonetrainError(f"archive {archive} is not a folder", "name a folder of talking-head clips")
    clips = sorted(p for p in archive.iterdir() if p.is_file() and p.suffix.lower() in VIDEO_EXTENSIONS
                   and not any(fnmatch.fnmatch(p.name, pat) for pat in exclude))
    if not clips:
        raise ClonetrainError(f"no video clips in {archive} (after --exclude)",
                              f"put clips ({', '.join(VIDEO_EXTENSIONS)}) into {archive}")
    return clips


def _place(src: Path, dst: Path) -> None:
    """The clip into the clone's raw folder: a hard link where the file system allows it, else a copy (written
    atomically). An existing different file is never replaced: raw/ holds what a studio uploaded."""
    if dst.exists():
        if dst.stat().st_size != src.stat().st_size:
            raise ClonetrainError(f"{dst} exists and differs from {src}",
                                  "move it away, or give this archive another --base")
        return
    try:
        os.link(src, dst)
    except OSError:
        with atomic_path(dst) as tmp:
            shutil.copyfile(src, tmp)


def import_archive(root: Path, base: str, clips: list[Path], consent_file: Path) -> list[str]:
    """One clone per clip, each with a copy of the archive's consent record. Returns the clone ids."""
    from clonetrain.product import consent

    validate_clone_id(base)
    if not consent_file.is_file():
        raise ClonetrainError(f"no consent record at {consent_file}",
                              "write one record covering the archive (person: the people of the archive, "
                              "permitted_uses: [research] at least) and pass it with --consent")
    clones = []
    for clip in clips:
        clone = clip_clone_id(base, clip)
        if clone in clones:  # a.mp4 and a.mov, or names that differ only in characters ids cannot hold
            clone = validate_clone_id(f"{clone[:58]}-{len(clones) + 1}")
        ws = Workspace(root, clone)
        ws.raw_dir.mkdir(parents=True, exist_ok=True)
        _place(clip, ws.raw_dir / clip.name)
        record = ws.raw_dir / "consent.yaml"
        if not record.is_file() or record.read_bytes() != consent_file.read_bytes():
            with atomic_path(record) as tmp:
                shutil.copyfile(consent_file, tmp)
        marker = ws.raw_dir / CLIP_MARKER
        if not is_corpus_clip(ws.raw_dir):
            write_json_atomic(marker, {"base": base, "clip": clip.name})
        consent.require_live(root, clone, use="train")  # a malformed or expired record fails here, once
        clones.append(clone)
    return clones


def judge(ws: Workspace, min_peak_margin: float, min_correlation: float, max_offset_frames: float,
          min_windows: int, image_size: int, window: int) -> dict:
    """Keep a preprocessed clip for pretraining, or say why not. A clip is one take: its offset is takes[0]'s."""
    row: dict = {"clone": ws.clone}
    if not files.exists(ws, "audio", "offsets"):
        return {**row, "kept": False, "reason": "not preprocessed"}
    takes = files.read_json(ws, "audio", "offsets")
    if not takes:
        return {**row, "kept": False, "reason": "no take with speech"}
    t = takes[0]
    row.update(offset_frames=t.get("offset_frames"), peak_margin=t.get("peak_margin"),
               peak_correlation=t.get("peak_correlation"), corrected_frames=t.get("corrected_frames", 0))
    margin, peak = t.get("peak_margin"), t.get("peak_correlation")
    if margin is None or margin < min_peak_margin:
        return {**row, "kept": False,
                "reason": f"sound not shown to follow the mouth (peak margin {margin} < {min_peak_margin})"}
    if peak is None or peak < min_correlation:
        return {**row, "kept": False, "reason": f"mouth barely follows the sound (peak {peak} < {min_correlation})"}
    if not t.get("reliable"):
        return {**row, "kept": False, "reason": "the audio stage could not measure how the mouth follows the sound "
                                                "(too little speech for an offset); its offset was not corrected"}
    residual = abs((t.get("offset_frames") or 0) - (t.get("corrected_frames") or 0))
    if residual > max_offset_frames:
        return {**row, "kept": False, "reason": f"audio {residual:.1f} frames off after correction"}
    windows = usable_windows(ws, image_size, window)
    row["usable_windows"] = windows
    if windows < min_windows:
        return {**row, "kept": False, "reason": f"{windows} usable training windows (< {min_windows})"}
    return {**row, "kept": True, "reason": "in sync"}


def usable_windows(ws: Workspace, image_size: int, length: int) -> int:
    """Training windows of `length` usable frames (model.sync_frames) the clip gives at the model's size."""
    from clonetrain.contract.clip import load_clip
    from clonetrain.training.data import window_starts

    try:
        clip = load_clip(ws, image_size)
    except ClonetrainError:
        return 0
    return len(window_starts(clip, 0, clip.n, length))


def compose(root: Path, clone: str, stage: str, overrides: list[str]):
    from clonetrain.product.nightly import compose as nightly_compose

    cfg = nightly_compose(root, clone, overrides)
    cfg.stage = stage
    return cfg


def preprocess(root: Path, clones: list[str], overrides: list[str]) -> dict[str, str]:
    """Run the preprocessing a base needs for every clone; a clone that fails is reported, not fatal."""
    from clonetrain.core import pipeline

    failed = {}
    for i, clone in enumerate(clones, 1):
        log.info("corpus: %d/%d %s", i, len(clones), clone)
        try:
            for stage in PREPROCESS:
                pipeline.run(compose(root, clone, stage, overrides))
        except ClonetrainError as err:
            log.warning("corpus: %s skipped: %s", clone, err)
            failed[clone] = str(err)
    return failed


def build(root: Path, base: str, archive: Path, consent_file: Path, exclude: list[str],
          overrides: list[str]) -> dict:
    clips = archive_clips(archive, exclude)
    clones = import_archive(root, base, clips, consent_file)
    failed = preprocess(root, clones, overrides)
    cfg = compose(root, base, "pretrain", overrides)
    criteria = {"min_peak_margin": float(cfg.audio_features.min_peak_margin),
                "min_correlation": float(cfg.audio_features.min_sync_correlation),
                "max_offset_frames": float(cfg.pretrain.max_offset_frames),
                "min_windows": int(cfg.pretrain.min_windows)}
    shape = {"image_size": int(cfg.model.image_size), "window": int(cfg.model.sync_frames)}
    rows = []
    for clip, clone in zip(clips, clones):
        if clone in failed:
            row = {"clone": clone, "kept": False, "reason": failed[clone]}
        else:
            row = judge(Workspace(root, clone), **criteria, **shape)
        rows.append({"clip": clip.name, **row})
    kept = [r["clone"] for r in rows if r["kept"]]
    report = {"archive": str(archive), "base": base, "clips": len(rows), "kept": len(kept),
              "dropped": len(rows) - len(kept), "exclude": exclude,
              "criteria": criteria,
              "rows": rows}
    out = files.of_clone(root, base, "corpus", "report")
    out.parent.mkdir(parents=True, exist_ok=True)
    write_json_atomic(out, report)
    return report


def main(argv: list[str] | None = None) -> int:
    from clonetrain.core import config, quiet

    config.register()
    ap = argparse.ArgumentParser(prog="python -m clonetrain corpus", description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("archive", type=Path, help="folder of talking-head clips, one person speaking in each")
    ap.add_argument("--base", default="base", help="name of the base (and prefix of the clip clones)")
    ap.add_argument("--consent", type=Path, required=True, help="consent record covering the archive")
    ap.add_argument("--exclude", action="append", default=[], help="file-name pattern to leave out (repeatable)")
    ap.add_argument("--root", type=Path, default=Path("data"), help="data root (paths.root)")
    ap.add_argument("--pretrain", action="store_true", help="then pretrain the base on the kept clips")
    ap.add_argument("overrides", nargs="*", help="Hydra overrides, e.g. audio_features.encoder=whisper")
    args = ap.parse_intermixed_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    quiet.third_party_loggers()
    try:
        overrides = [*DEFAULTS, *args.overrides]
        report = build(args.root.resolve(), args.base, args.archive.resolve(), args.consent, args.exclude, overrides)
        for r in report["rows"]:
            if not r["kept"]:
                log.info("dropped %s: %s", r["clip"], r["reason"])
        log.info("corpus %s: kept %d of %d clips (%s)", args.base, report["kept"], report["clips"],
                 files.of_clone(args.root, args.base, "corpus", "report"))
        if args.pretrain:
            from clonetrain.core import pipeline

            kept = [r["clone"] for r in report["rows"] if r["kept"]]
            pipeline.run(compose(args.root.resolve(), args.base, "pretrain",
                                 [*overrides, f"pretrain.corpus=[{','.join(kept)}]"]))
    except ClonetrainError as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
