"""Landmark fingerprints: peak-pair extraction, the engine, its compiled first pass."""
