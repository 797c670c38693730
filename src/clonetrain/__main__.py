"""python -m clonetrain stage=<stage|preprocess|all> clone=<id> [hydra overrides]

The product's other commands share the entry point:
    python -m clonetrain registry list|show|history|promote ...
    python -m clonetrain consent status|revoke CLONE
    python -m clonetrain nightly [--root data] [hydra overrides]
    python -m clonetrain corpus ARCHIVE --base base --consent consent.yaml
"""

from __future__ import annotations

import importlib
import logging
import sys

import hydra
from omegaconf import DictConfig

from clonetrain.core import config, pipeline
from clonetrain.core.errors import ClonetrainError
from clonetrain.core.workspace import validate_clone_id

config.register()
log = logging.getLogger("clonetrain")
# A first argument naming one of these runs that command (its own arguments follow) instead of the pipeline.
COMMANDS = {name: f"clonetrain.product.{name}" for name in ("registry", "consent", "nightly", "corpus")}


def check_clone_arguments(argv: list[str]) -> None:
    """Refuse a crafted clone id (a/../../x) before Hydra runs: Hydra names its log folder after the clone and
    would create it, outside the data root, before any of our code sees the id."""
    for arg in argv:
        key, sep, value = arg.partition("=")
        if sep and key.lstrip("+~") == "clone":
            for item in value.split(","):  # a multirun list: clone=a,b
                validate_clone_id(item.strip().strip("'\""))


@hydra.main(version_base="1.3", config_path="../../conf", config_name="config")
def main(cfg: DictConfig) -> None:
    try:
        pipeline.run(cfg)
    except ClonetrainError as err:
        # A message the user can act on, not a traceback.
        log.error("%s", err)
        sys.exit(2)


if __name__ == "__main__":
    if len(sys.argv) > 1 and sys.argv[1] in COMMANDS:
        sys.exit(importlib.import_module(COMMANDS[sys.argv[1]]).main(sys.argv[2:]))
    try:
        check_clone_arguments(sys.argv[1:])
    except ClonetrainError as err:
        print(f"error: {err}", file=sys.stderr)
        sys.exit(2)
    main()
