"""On the device: run training jobs on unpacked clones with clonetrain's own fit(); models go to $OUT.
    python .device/train.py PACK_DIR JOBS.json CFG.yaml"""
import json, os, shutil, sys, time, types
from pathlib import Path

# Hydra and omegaconf from site/ beside this file; clonetrain from the checkout it was copied into (.device/ or
# .device/<run>/ inside it).
REPO = next(p for p in Path(__file__).resolve().parents if (p / "src" / "clonetrain").is_dir())
sys.path[:0] = [str(Path(__file__).parent / "site"), str(REPO / "src")]
import lightning  # noqa: F401  (before the stubs: its import probes which packages exist)
for name in ("librosa", "ffmpeg", "soundfile"):  # feature computation and media I/O: not used by training
    try:
        __import__(name)
    except ImportError:
        sys.modules[name] = types.ModuleType(name)
from omegaconf import OmegaConf
from torch.utils.data import ConcatDataset
from clonetrain.contract import files
from clonetrain.contract.clip import load_clip
from clonetrain.training.data import WindowDataset
from clonetrain.training.fit import fit
from clonetrain.core.workspace import Workspace

pack, jobs, base_cfg = Path(sys.argv[1]), json.loads(Path(sys.argv[2]).read_text()), OmegaConf.load(sys.argv[3])
out = Path(os.environ.get("OUT", "/tmp/out"))
models = {}
root = Path(os.environ.get("CTROOT", "/tmp/ctroot"))
needed = {c for j in jobs for c in j["clones"]}
for d in pack.iterdir():
    if d.is_dir() and d.name in needed and not Workspace(root, d.name).work_dir.exists():
        shutil.copytree(d, Workspace(root, d.name).work_dir)  # the pack holds each clone's work folder
for job in jobs:
    cfg = OmegaConf.merge(base_cfg, {})
    for k, v in job.get("overrides", {}).items():
        OmegaConf.update(cfg, k, v, merge=False)
    cfg.paths.root = str(root)
    T = cfg.model.sync_frames
    tr, va, feats = [], [], None
    for c in job["clones"]:
        clip = load_clip(Workspace(root, c), cfg.model.image_size)
        feats = feats or clip.features
        split = clip.split(cfg.train.holdout)
        try:
            a, b = WindowDataset(clip, 0, split, T, 0, split, augment=job["kind"] == "pretrain"), WindowDataset(clip, split, clip.n, T, 0, split)
        except Exception as err:
            print("skip", c, err, flush=True)
            continue
        if len(a): tr.append(a)
        if len(b): va.append(b)
    t0 = time.time()
    init = models.get(job.get("init")) or (Path(job["init_path"]) if job.get("init_path") else None)
    d = Path("/tmp/jobs") / job["name"]
    shutil.rmtree(d, ignore_errors=True); d.mkdir(parents=True)
    stats = fit(cfg, ConcatDataset(tr), ConcatDataset(va), d, d / "resume", job["name"], features=feats, init=init, meta={"job": job["name"]})
    models[job["name"]] = files.output(d, "train", "model")  # where fit() wrote it
    if job.get("keep", True):
        shutil.copy(models[job["name"]], out / f"{job['name']}.safetensors")
    line = {"job": job["name"], "windows": sum(len(x) for x in tr), **{k: stats[k] for k in ("steps", "seconds", "stopped_by", "best_step", "best_monitor", "device", "precision")}, "metrics": stats["metrics"], "wall": round(time.time() - t0, 1)}
    print(json.dumps(line), flush=True)
    with open(out / os.environ.get("JOBS_LOG", "jobs.jsonl"), "a") as fh:
        fh.write(json.dumps(line) + "\n")
