"""Face detection, tracking, crops and landmarks. Models behind small protocols; no paths, no stages."""
