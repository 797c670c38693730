"""Audio analysis: voice activity, features, pitch, speaker profile, audio-video offset. No paths, no stages."""
