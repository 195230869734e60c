"""Degradations: the effects, the one registry of query degradations, the training chains."""
