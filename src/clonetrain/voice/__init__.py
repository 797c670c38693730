"""The clone's voice: transcripts, a voice model built from the footage's own speech, text to speech, and
the measures of how well a converted voice matches the person."""
