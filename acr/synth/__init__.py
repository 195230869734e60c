"""Procedural songs: the embedded default data set, deterministic per seed, with no download.

A song is composed once (tempo, key, sections, chords, bass, lead, drums) and then rendered in
an orchestration ("version" k > 0 is the confusable-version hard case) or hummed (melody
queries). Composition, rendering and humming draw from separate random streams, so rendering a
version or a hum never changes the notes.

composition.py composes, rendering.py renders versions, humming.py hums; _common.py holds the
random streams and the signal helpers the last two share.
"""

from ._common import (
    COMPOSE_STREAM,
    HUM_STREAM,
    PEAK_LIMIT,
    RENDER_STREAM,
    TABLE_SIZE,
    TARGET_RMS,
)
from .composition import (
    ARPEGGIO_ORDER,
    BASS_PATTERNS,
    BEATS_PER_BAR,
    CHORD_RHYTHMS,
    DRUM_PATTERNS,
    DRUM_VELOCITIES,
    LEAD_DURATIONS_BEATS,
    LEAD_MOVES,
    MODE_INTERVALS,
    MODE_PROBABILITIES,
    PROGRESSIONS,
    ROMAN_NUMERALS,
    STEPS_PER_BEAT,
    STRUCTURES,
    DrumHit,
    Note,
    Section,
    Song,
    compose_song,
)
from .humming import GLOTTAL_HARMONICS, VOWEL_FORMANTS, render_humming
from .rendering import (
    GAIN_RANGES_DB,
    KIT_RANGES,
    LOWPASS_RANGES_HZ,
    MAX_NOTE_S,
    PART_TIMBRES,
    SWINGS,
    TIMBRES,
    VIBRATO_HZ,
    Timbre,
    render_song,
    synthesize_track,
)
from .rendering import _orchestrate as _orchestrate  # tests compare two versions' orchestrations

__all__ = [
    "ARPEGGIO_ORDER",
    "BASS_PATTERNS",
    "BEATS_PER_BAR",
    "CHORD_RHYTHMS",
    "COMPOSE_STREAM",
    "DRUM_PATTERNS",
    "DRUM_VELOCITIES",
    "GAIN_RANGES_DB",
    "GLOTTAL_HARMONICS",
    "HUM_STREAM",
    "KIT_RANGES",
    "LEAD_DURATIONS_BEATS",
    "LEAD_MOVES",
    "LOWPASS_RANGES_HZ",
    "MAX_NOTE_S",
    "MODE_INTERVALS",
    "MODE_PROBABILITIES",
    "PART_TIMBRES",
    "PEAK_LIMIT",
    "PROGRESSIONS",
    "RENDER_STREAM",
    "ROMAN_NUMERALS",
    "STEPS_PER_BEAT",
    "STRUCTURES",
    "SWINGS",
    "TABLE_SIZE",
    "TARGET_RMS",
    "TIMBRES",
    "VIBRATO_HZ",
    "VOWEL_FORMANTS",
    "DrumHit",
    "Note",
    "Section",
    "Song",
    "Timbre",
    "compose_song",
    "render_humming",
    "render_song",
    "synthesize_track",
]
