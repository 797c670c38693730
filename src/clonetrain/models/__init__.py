"""The lip-sync networks and their checkpoint format. No paths, no stages."""
