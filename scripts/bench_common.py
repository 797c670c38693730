"""What every benchmark shares: the machine it ran on, and writing its result file."""

from __future__ import annotations

import json
import os
import platform
from pathlib import Path


def machine() -> dict:
    cpu = next((line.split(":", 1)[1].strip() for line in Path("/proc/cpuinfo").read_text().splitlines()
                if line.startswith("model name")), platform.processor())
    mem = next((int(line.split()[1]) // 1024 for line in Path("/proc/meminfo").read_text().splitlines()
                if line.startswith("MemTotal")), None)
    import torch

    return {"cpu": cpu, "cores": os.cpu_count(), "memory_mib": mem, "platform": platform.platform(),
            "python": platform.python_version(), "torch": torch.__version__,
            "cuda": torch.cuda.get_device_name(0) if torch.cuda.is_available() else None}


def commit(root: Path | None = None) -> str:
    """The commit the benchmark ran at (commit before a benchmark, so that its result names the code)."""
    import subprocess

    root = root or Path(__file__).resolve().parents[1]
    return subprocess.run(["git", "-C", str(root), "rev-parse", "HEAD"], capture_output=True, text=True).stdout.strip()


def write_result(path: Path, result: dict) -> None:
    """Add the machine, write bench/results/NAME.json and print it."""
    result = {**result, "machine": machine()}
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(result, indent=2) + "\n")
    print(json.dumps(result, indent=2))
