"""Lightning training of the lip-sync models: datasets over preprocessed clones, the module, the fit recipe."""
