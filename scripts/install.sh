#!/usr/bin/env bash
# Create .venv and install clonetrain with its test extras. torch is pinned to the CPU build that installs
# quickly here; on a GPU machine install the CUDA torch you want first and this leaves it alone.
set -euo pipefail
cd "$(dirname "$0")/.."
# ffmpeg; and pyworld (the voice's vocoder) builds from source: it needs a C++ compiler and the Python headers.
APT=()
command -v ffmpeg >/dev/null 2>&1 || APT+=(ffmpeg)
command -v g++ >/dev/null 2>&1 || APT+=(g++)
# The studio's browser test drives the system's headless Chromium through its driver (tests/test_studio.py).
command -v chromium >/dev/null 2>&1 || command -v chromium-browser >/dev/null 2>&1 || APT+=(chromium)
command -v chromedriver >/dev/null 2>&1 || APT+=(chromium-driver)
python3 -c 'import sysconfig, os, sys; sys.exit(not os.path.isfile(os.path.join(sysconfig.get_paths()["include"], "Python.h")))' \
  || APT+=(python3-dev)
if [ ${#APT[@]} -gt 0 ]; then
  SUDO=""; [ "$(id -u)" = 0 ] || SUDO="sudo"
  $SUDO apt-get update -qq && DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq "${APT[@]}" >/dev/null
fi
[ -d .venv ] || python3 -m venv .venv
. .venv/bin/activate
python -m pip install -q --upgrade pip
python -c "import torch" 2>/dev/null || python -m pip install -q torch==2.13.0
python -m pip install -q -e ".[dev]"
# librosa compiles its numba kernels on first use (~15 s of CPU) and caches them on disk: do it now, not in the
# audio stage's first run.
python -c "from clonetrain.audio_analysis.features import warm_up; warm_up()"
