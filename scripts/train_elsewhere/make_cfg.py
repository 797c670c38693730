import sys
from pathlib import Path
from omegaconf import OmegaConf
from clonetrain.core import config
from clonetrain.product.nightly import compose
config.register()
cfg = compose(Path("/tmp/ctroot"), "x", sys.argv[2:])
Path(sys.argv[1]).write_text(OmegaConf.to_yaml(cfg, resolve=True))
