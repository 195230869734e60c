"""Procedural songs: the embedded default data set, deterministic per seed, with no download.

A song is composed once (tempo, key, sections, chords, bass, lead, drums) and then rendered in
an orchestration ("version" k > 0 is the confusable-version hard case) or hummed (melody
queries). Composition, rendering and humming draw from separate random streams, so rendering a
version or a hum never changes the notes.

composition.py composes, rendering.py renders versions, humming.py hums; _common.py holds the
random streams and the signal helpers the last two share.
"""

from ._common import PEAK_LIMIT
from .composition import MODE_INTERVALS, DrumHit, Note, Section, Song, compose_song
from .humming import render_humming
from .rendering import render_song, synthesize_track

__all__ = [
    "MODE_INTERVALS",
    "PEAK_LIMIT",
    "DrumHit",
    "Note",
    "Section",
    "Song",
    "compose_song",
    "render_humming",
    "render_song",
    "synthesize_track",
]
