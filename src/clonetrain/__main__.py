"""python -m clonetrain stage=<stage|preprocess|all> clone=<id> [hydra overrides]"""

from __future__ import annotations

import logging
import sys

import hydra
from omegaconf import DictConfig

from clonetrain import config, pipeline
from clonetrain.errors import ClonetrainError
from clonetrain.workspace import validate_clone_id

config.register()
log = logging.getLogger("clonetrain")


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
    try:
        check_clone_arguments(sys.argv[1:])
    except ClonetrainError as err:
        print(f"error: {err}", file=sys.stderr)
        sys.exit(2)
    main()
