"""Logs that hold only what the user should read: third-party noise silenced at its source, each case named
here with why it is harmless. Our own messages are never filtered; a third-party message not listed here still
reaches the log.

- MediaPipe's C++ graph (absl logging, TFLite) writes straight to file descriptor 2, and no environment variable
  (GLOG_minloglevel, TF_CPP_MIN_LOG_LEVEL: tried) turns it off. `native_stderr` catches fd 2 around each
  MediaPipe call, drops the known lines and passes any other line on to our log as a warning.
- Lightning adds its own console handler to the `lightning` logger on import, so under Hydra's root handler
  every message printed twice; it also advertises litlogger on every fit. `lightning_logging` fixes both.
- matplotlib (imported by MediaPipe) announces that it built its font cache.
"""

from __future__ import annotations

import contextlib
import logging
import os
import re
import sys
import tempfile
import warnings
from collections.abc import Iterator

log = logging.getLogger(__name__)

# Lines MediaPipe's native code prints on every graph start, none of which the user can act on.
MEDIAPIPE_NOISE = tuple(re.compile(p) for p in (
    # The face models have one signature; "feedback tensors" are a feature they do not use.
    r"inference_feedback_manager\.cc.*Feedback manager requires a model with a single signature",
    # The face mesh is given square crops, for which NORM_RECT without image dimensions is exact.
    r"landmark_projection_calculator\.cc.*Using NORM_RECT without IMAGE_DIMENSIONS",
    # TFLite choosing its CPU backend, and absl saying where its log goes (here: to these filters).
    r"^INFO: Created TensorFlow Lite XNNPACK delegate for CPU",
    r"^WARNING: All log messages before absl::InitializeLog\(\) is called are written to STDERR",
))

# Lightning's records that tell an operator nothing about this run.
LIGHTNING_NOISE = tuple(re.compile(p) for p in (
    r"^💡 Tip:",                               # an advertisement for a cloud service (litlogger)
    r"^(GPU|TPU|HPU) available: ",              # the hardware; the train summary says what was used
))

_depth = 0  # native_stderr nests: only the outermost one moves fd 2


@contextlib.contextmanager
def native_stderr(source: str, noise: tuple[re.Pattern, ...] = MEDIAPIPE_NOISE) -> Iterator[None]:
    """Catch what native code writes to fd 2 during the block; drop the lines matching `noise`, log the rest
    as warnings from `source`. Keep the block to one library call: our own messages written inside it would
    only appear when it ends."""
    global _depth
    if _depth:
        yield
        return
    _depth += 1
    caught = b""
    try:
        with tempfile.TemporaryFile() as tmp:
            sys.stderr.flush()
            saved = os.dup(2)
            os.dup2(tmp.fileno(), 2)
            try:
                yield
            finally:
                with contextlib.suppress(Exception):
                    sys.stderr.flush()
                os.dup2(saved, 2)
                os.close(saved)
                tmp.seek(0)
                caught = tmp.read()
    finally:
        _depth -= 1
    for line in caught.decode(errors="replace").splitlines():
        if line.strip() and not any(p.search(line) for p in noise):
            log.warning("%s: %s", source, line)


class _DropLines(logging.Filter):
    def __init__(self, patterns: tuple[re.Pattern, ...]):
        super().__init__()
        self.patterns = patterns

    def filter(self, record: logging.LogRecord) -> bool:
        message = record.getMessage()
        return not any(p.search(message) for p in self.patterns)


def lightning_logging() -> None:
    """Once Lightning is imported: its messages go through our handlers once (not also through its own), without
    its advertisement and hardware lines. Idempotent."""
    root_has_handlers = logging.getLogger().hasHandlers()
    for name in ("lightning", "lightning.pytorch", "lightning.fabric", "torchmetrics"):
        logger = logging.getLogger(name)
        if root_has_handlers:  # an application (Hydra, pytest) configured logging: use it, do not duplicate
            for h in [h for h in logger.handlers if type(h) is logging.StreamHandler]:
                logger.removeHandler(h)
            logger.propagate = True
        if not any(isinstance(f, _DropLines) for f in logger.filters):
            logger.addFilter(_DropLines(LIGHTNING_NOISE))
    # Filters on a logger apply to records logged there, not to its children's: rank_zero_info logs here.
    for name in ("lightning.pytorch.utilities.rank_zero", "lightning.fabric.utilities.rank_zero"):
        logger = logging.getLogger(name)
        if not any(isinstance(f, _DropLines) for f in logger.filters):
            logger.addFilter(_DropLines(LIGHTNING_NOISE))


@contextlib.contextmanager
def lightning_warnings() -> Iterator[None]:
    """Around a Lightning fit: torch deprecated LeafSpec(), which Lightning's own pytree helper still builds on
    every step (Lightning calling torch; nothing in our code can change it)."""
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message=r".*isinstance\(treespec, LeafSpec\)` is deprecated")
        yield


def third_party_loggers() -> None:
    """Log levels of libraries that announce routine work at INFO."""
    logging.getLogger("matplotlib").setLevel(logging.WARNING)  # "generated new fontManager" (first run only)
