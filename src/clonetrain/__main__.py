"""python -m clonetrain stage=<stage|preprocess|all> clone=<id> [hydra overrides]"""

from __future__ import annotations

import logging
import sys

import hydra
from omegaconf import DictConfig

from clonetrain import config, pipeline
from clonetrain.errors import ClonetrainError

config.register()
log = logging.getLogger("clonetrain")


@hydra.main(version_base="1.3", config_path="../../conf", config_name="config")
def main(cfg: DictConfig) -> None:
    try:
        pipeline.run(cfg)
    except ClonetrainError as err:
        # A message the user can act on, not a traceback.
        log.error("%s", err)
        sys.exit(2)


if __name__ == "__main__":
    main()
