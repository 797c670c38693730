"""Held-out evaluation of lip-sync output, judged by the project's own landmark backend."""
