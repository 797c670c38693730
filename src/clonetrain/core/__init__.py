"""Infrastructure: the pipeline, workspaces, manifests, the config, errors, progress and the experiment log."""
