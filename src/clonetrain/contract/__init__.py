"""The data contract between stages: what each stage's files hold and how to read and write them.

Stages, training, evaluation and render read each other's outputs only through this package, so a file's
layout is written down once, and the pipeline learns from these readers which upstream files a stage used.
It knows nothing of models, Lightning or Hydra beyond reading a config value.
"""
