"""The studio-facing quality report: small SVG plots and one self-contained HTML page."""
