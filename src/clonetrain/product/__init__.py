"""The product around the models: packages, the registry, nightly, consent, the avatar, the corpus."""
