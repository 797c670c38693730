"""Things that really swap (the landmark model, the face detector, the training logger) are named in the config
by their class, Hydra's `_target_`, with their arguments beside it:

    landmarks:
      model: {_target_: clonetrain.vision.landmarks.FanLandmarker, weights: ..., device: auto}

`build(cfg.landmarks.model)` makes one. A stage that builds one depends on the whole node (a new class or argument
reruns it). A target that cannot be imported or built is a clear error that names the setting.
"""

from __future__ import annotations

from typing import Any

from clonetrain.contract.reads import whole
from clonetrain.core.errors import ClonetrainError


def build(node: Any, setting: str, **runtime: Any) -> Any:
    """The object `node` names (a config section with `_target_`, seen through a stage's SettingsView or not);
    `runtime` adds the arguments only known while running (a save folder, a run name). `setting` is the node's
    dotted name, for the error."""
    if node is None:
        return None
    spec = whole(node)
    if not isinstance(spec, dict) or "_target_" not in spec:
        raise ClonetrainError(f"{setting} names no class to build (no _target_): {spec!r}",
                              f"set {setting}._target_ to a class, or choose a preset (see conf/)")
    from hydra.errors import InstantiationException
    from hydra.utils import instantiate

    try:
        return instantiate(spec, **runtime)
    except InstantiationException as err:
        # An error raised by the class itself (a missing weight file) is its own, clearer message.
        if isinstance(err.__cause__, ClonetrainError):
            raise err.__cause__ from None
        raise ClonetrainError(f"{setting}: could not build {spec['_target_']!r}: {err}",
                              f"check {setting} (its _target_ and arguments) or choose a preset (see conf/)") from None


def build_landmarker(section: Any):
    """The landmark model the config's `landmarks` section names: `model` holds its class (`_target_`) and
    arguments (conf/landmarks/<name>.yaml), `backend` its name in the records, which must be the model's."""
    made = build(section.model, "landmarks.model")
    if getattr(made, "name", None) != section.backend:
        made.close()
        raise ClonetrainError(f"landmarks.backend={section.backend!r}, but landmarks.model builds "
                              f"{type(made).__name__} ({getattr(made, 'name', None)!r})",
                              "choose both with the preset: landmarks=mediapipe or landmarks=fan")
    return made
