"""The data contract between stages: every stage's file names, and the readers and writers of what they hold.

Stages, training, evaluation and render read each other's outputs only through this package, so a file's
place is written down once, and the pipeline learns from these readers which upstream files a stage used.
It knows nothing of models or Lightning; of Hydra it uses a config value and, in build.py, instantiate.
"""
