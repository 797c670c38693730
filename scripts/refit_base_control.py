"""Fit a base's mouth control again, as `stage=pretrain` fits it today, without training the base again.

The control is a closed-form regression from the sound to the mouth opening (models/mouth_control.py), fitted before
training; the generator learns from real openings (only validation hears the regression). So a base trained before
a change to how the control is fitted (session 26: whole corpus clips and half-decade ridges) gets today's fit in a
minute, with its networks unchanged. The corpus is the one the base was pretrained on (its checkpoint names it), or
as given:

    python scripts/refit_base_control.py BASE_IN.safetensors BASE_OUT.safetensors --data data \\
        ['pretrain.corpus=[base-clip1,base-clip2]']

The fit starts from zero, as a base's first fit does (a base that pretrain continued from another is fitted towards
that one's control instead; this script does not have it).

Then fine-tune clones from BASE_OUT (model.base=BASE_OUT: every clone trained from the old one trains again).
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "src"))


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("base_in", type=Path)
    ap.add_argument("base_out", type=Path)
    ap.add_argument("--data", type=Path, default=ROOT / "data", help="the data root holding the corpus clips")
    ap.add_argument("--base-clone", default="base", help="the base's name under the data root")
    ap.add_argument("overrides", nargs="*", help="Hydra overrides, e.g. pretrain.corpus=[...]")
    args = ap.parse_intermixed_args()

    from clonetrain.audio_analysis.model_input import check_matches
    from clonetrain.core.errors import ClonetrainError
    from clonetrain.core.workspace import Workspace
    from clonetrain.models import checkpoint
    from clonetrain.models.mouth_control import MouthControl
    from clonetrain.product.corpus import compose
    from clonetrain.stages.pretrain import corpus_datasets

    root = args.data.resolve()
    try:
        generator, expert, meta = checkpoint.load(args.base_in, "cpu")
        overrides = list(args.overrides)
        if not any(o.startswith("pretrain.corpus=") for o in overrides) and meta.get("corpus"):
            overrides.append(f"pretrain.corpus=[{','.join(meta['corpus'])}]")  # the clips it was pretrained on
        cfg = compose(root, args.base_clone, "pretrain", overrides)
        _, _, control_ds, rows, features = corpus_datasets(cfg, Workspace(root, args.base_clone))
        if getattr(generator, "mouth", None) is None:
            raise SystemExit(f"{args.base_in} has no mouth control to fit")
        check_matches(features, generator.spec.audio_input, generator.spec.n_mels, args.base_clone,
                      what=f"the base {args.base_in}")
    except ClonetrainError as err:
        raise SystemExit(str(err)) from None
    control = MouthControl(features.dims)
    # From zero, its ridge cross-validated clip by clip, as a base's first fit (not pulled towards the old fit).
    info = control.fit((part.control_samples() for part in control_ds.datasets), ridge=cfg.train.mouth_ridge or None)
    if not info["fitted"]:
        raise SystemExit(f"the corpus gave no frames to fit on ({len(rows)} clips)")
    generator.mouth.load_state_dict(control.state_dict())
    checkpoint.save(args.base_out, generator, expert,
                    {**meta, "mouth_control": info, "mouth_control_refitted_from": str(args.base_in)})
    print(json.dumps({"base": str(args.base_out), "clips": len(rows), "mouth_control": info}, indent=1))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
