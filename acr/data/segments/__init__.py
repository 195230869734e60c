"""Segment strategies: where excerpts (training anchors, simulated queries) start."""
