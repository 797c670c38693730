"""clonetrain: one minute of talking-head footage in, a packaged lip-sync streamer clone out."""

__version__ = "0.1.0"
