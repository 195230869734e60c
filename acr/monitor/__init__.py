"""Monitoring: every catalog track in a long recording, with where it starts and ends
(acr monitor), and the catalog matched against itself (acr dedup).

stream (blocks of a file, standard input or a microphone) -> scan (windows recognised) ->
segments (agreeing windows merged) -> output (CSV rows, JSONL events); dedup scans the
catalog's own tracks.
"""
