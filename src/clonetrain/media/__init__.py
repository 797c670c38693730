"""ffmpeg-backed media helpers: probing, normalising and decoding. They know nothing about stages."""
