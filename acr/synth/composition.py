"""Composing songs: the note, drum-hit, section and song types, harmony, parts and layout."""

from __future__ import annotations

import itertools
from dataclasses import dataclass

import numpy as np

from ._common import COMPOSE_STREAM

BEATS_PER_BAR = 4

STEPS_PER_BEAT = 4  # the drum grid is in sixteenth notes

MODE_INTERVALS = {
    "major": (0, 2, 4, 5, 7, 9, 11),
    "minor": (0, 2, 3, 5, 7, 8, 10),
    "dorian": (0, 2, 3, 5, 7, 9, 10),
    "mixolydian": (0, 2, 4, 5, 7, 9, 10),
}

MODE_PROBABILITIES = (0.4, 0.35, 0.125, 0.125)

# Common progressions in Roman numerals, one chord per bar; chords are the diatonic triads of the
# mode, so "v" in minor and "IV" in dorian name the same scale degree as in major.
PROGRESSIONS = {
    "major": (
        "I V vi IV",
        "ii V I I",
        "I vi IV V",
        "vi IV I V",
        "I IV V IV",
        "I I I I IV IV I I V IV I V",
    ),
    "minor": ("i VI III VII", "i iv v i", "i VII VI VII", "i VI iv v", "i iv VII III"),
    "dorian": ("i IV i IV", "i VII IV i", "i VI III VII", "i iv v i"),
    "mixolydian": ("I VII IV I", "I IV VII IV", "I V vi IV", "I IV V IV"),
}

ROMAN_NUMERALS = ("i", "ii", "iii", "iv", "v", "vi", "vii")

STRUCTURES = (
    ("intro", "verse", "chorus", "verse", "chorus", "bridge", "chorus"),
    ("verse", "chorus", "verse", "chorus", "bridge", "chorus"),
    ("intro", "chorus", "verse", "chorus", "verse", "chorus"),
)

# Bass patterns per bar: (start beat, length in beats, chord function).
BASS_PATTERNS = {
    "roots": ((0, 2, "root"), (2, 2, "root")),
    "root_fifth": ((0, 1.5, "root"), (1.5, 0.5, "root"), (2, 2, "fifth")),
    "octaves": tuple((index / 2, 0.5, ("root", "octave")[index % 2]) for index in range(8)),
    "walking": ((0, 1, "root"), (1, 1, "third"), (2, 1, "fifth"), (3, 1, "approach")),
    "syncopated": ((0, 0.75, "root"), (0.75, 0.75, "root"), (1.5, 1, "fifth"), (3, 1, "octave")),
}

# Chord rhythms per bar: (start beat, length in beats); "arpeggio" is built from the chord tones.
CHORD_RHYTHMS = {
    "pad": ((0, 4),),
    "half_notes": ((0, 2), (2, 2)),
    "stabs": ((0, 0.5), (1.5, 0.5), (3, 0.5)),
    "offbeats": ((0.5, 0.25), (1.5, 0.25), (2.5, 0.25), (3.5, 0.25)),
    "arpeggio": (),
}

ARPEGGIO_ORDER = (0, 1, 2, 3, 2, 1, 0, 1)

# Drum patterns per bar on a sixteenth-note grid ("x" = hit).
DRUM_PATTERNS = {
    "rock": {"kick": "x.......x.x.....", "snare": "....x.......x...", "hat": "x.x.x.x.x.x.x.x."},
    "four_on_the_floor": {
        "kick": "x...x...x...x...",
        "snare": "....x.......x...",
        "hat": ".x.x.x.x.x.x.x.x",
        "open_hat": "..x...x...x...x.",
    },
    "half_time": {
        "kick": "x..x......x.....",
        "snare": "........x.......",
        "hat": "x.x.x.x.x.x.x.x.",
    },
    "breakbeat": {
        "kick": "x.....x...x.....",
        "snare": "....x.......x..x",
        "hat": "xxxxxxxxxxxxxxxx",
    },
    "sparse": {"kick": "x...............", "hat": "x...x...x...x..."},
}

DRUM_VELOCITIES = {"kick": 0.95, "snare": 0.85, "hat": 0.45, "open_hat": 0.5, "crash": 0.7}

LEAD_DURATIONS_BEATS = (0.25, 0.5, 1.0, 1.5, 2.0)

LEAD_MOVES = (-3, -2, -1, -1, 0, 1, 1, 2, 3)


@dataclass(frozen=True)
class Note:
    start_s: float
    duration_s: float
    pitch_midi: int
    velocity: float  # 0..1


@dataclass(frozen=True)
class DrumHit:
    start_s: float
    kind: str  # kick, snare, hat, open_hat, crash
    velocity: float


@dataclass(frozen=True)
class Section:
    label: str  # intro, verse, chorus, bridge; a label that recurs repeats the same notes
    start_s: float
    duration_s: float


@dataclass(frozen=True)
class Song:
    seed: int
    duration_s: float
    tempo_bpm: float
    key_root_midi: int  # tonic in the octave from middle C
    mode: str
    lead: tuple[Note, ...]
    bass: tuple[Note, ...]
    chords: tuple[Note, ...]
    drums: tuple[DrumHit, ...]
    sections: tuple[Section, ...]


_Event = tuple[float, float, int, float]  # start beat, length in beats, pitch, velocity


@dataclass(frozen=True)
class _Harmony:
    tonic_midi: int
    scale: tuple[int, ...]
    seventh_chords: bool

    def midi(self, step: int, tonic_offset: int = 0) -> int:
        """MIDI pitch of a scale step (0 = tonic, 7 = tonic an octave up)."""
        return self.tonic_midi + tonic_offset + 12 * (step // 7) + self.scale[step % 7]

    def chord_steps(self, degree: int) -> tuple[int, ...]:
        """Scale steps of the diatonic triad (or seventh chord) on a degree."""
        return (degree, degree + 2, degree + 4) + ((degree + 6,) if self.seventh_chords else ())


@dataclass(frozen=True)
class _SectionPlan:
    """The notes of one section in beats from its start; every occurrence repeats them."""

    bars: int
    lead: tuple[_Event, ...]
    bass: tuple[_Event, ...]
    chords: tuple[_Event, ...]
    drums: tuple[tuple[float, str, float], ...]


def compose_song(seed: int, duration_s: float = 30.0) -> Song:
    """Compose a song; its plan ignores duration_s, so a longer song extends a shorter one."""
    rng = np.random.default_rng([seed, COMPOSE_STREAM])
    tempo_bpm = float(np.round(rng.uniform(70.0, 170.0), 1))
    key_root_midi = 60 + int(rng.integers(12))
    mode = str(rng.choice(list(MODE_INTERVALS), p=MODE_PROBABILITIES))
    harmony = _Harmony(key_root_midi, MODE_INTERVALS[mode], bool(rng.random() < 0.3))
    plans = _plan_sections(rng, harmony, mode)
    structure = STRUCTURES[int(rng.integers(len(STRUCTURES)))]
    parts, sections = _lay_out(plans, structure, 60.0 / tempo_bpm, duration_s)
    return Song(seed, duration_s, tempo_bpm, key_root_midi, mode, *parts, sections)


def _plan_sections(
    rng: np.random.Generator, harmony: _Harmony, mode: str
) -> dict[str, _SectionPlan]:
    """Distinct progressions, motifs and grooves for each section label."""
    library = [_degrees(numerals) for numerals in PROGRESSIONS[mode]]
    verse_index, chorus_index = rng.choice(len(library), size=2, replace=False)
    verse, chorus = library[verse_index], library[chorus_index]
    if rng.random() < 0.25:
        verse = _random_progression(rng)
    bridge = _random_progression(rng)
    bass = rng.choice(list(BASS_PATTERNS), size=3)
    chord_styles = rng.choice(list(CHORD_RHYTHMS), size=3)
    main_grooves = [name for name in DRUM_PATTERNS if name != "sparse"]
    verse_groove, chorus_groove = rng.choice(main_grooves, size=2)
    intro_bars = int(rng.choice((2, 4)))
    return {
        "intro": _plan_section(rng, harmony, verse[:intro_bars], (bass[0], "pad", "sparse"), None),
        "verse": _plan_section(rng, harmony, verse, (bass[0], chord_styles[0], verse_groove), 0),
        "chorus": _plan_section(
            rng, harmony, chorus, (bass[1], chord_styles[1], chorus_groove), 2, crash=True
        ),
        "bridge": _plan_section(rng, harmony, bridge, (bass[2], chord_styles[2], "half_time"), 1),
    }


def _degrees(numerals: str) -> tuple[int, ...]:
    """0-based scale degrees of a progression written in Roman numerals."""
    return tuple(ROMAN_NUMERALS.index(numeral.lower()) for numeral in numerals.split())


def _random_progression(rng: np.random.Generator) -> tuple[int, ...]:
    """Four bars that leave the tonic, wander over diatonic chords, and end on IV or V."""
    middle = rng.choice((1, 2, 3, 4, 5), size=2)
    return (int(rng.choice((0, 3, 5))), int(middle[0]), int(middle[1]), int(rng.choice((3, 4))))


def _plan_section(
    rng: np.random.Generator,
    harmony: _Harmony,
    progression: tuple[int, ...],
    arrangement: tuple[str, str, str],
    lead_register_step: int | None,
    crash: bool = False,
) -> _SectionPlan:
    """One section; lead_register_step None means an instrumental section."""
    bass_pattern, chord_style, groove = arrangement
    has_lead = lead_register_step is not None
    lead = _lead(rng, harmony, progression, lead_register_step) if has_lead else ()
    return _SectionPlan(
        bars=len(progression),
        lead=tuple(lead),
        bass=tuple(_bass(harmony, progression, bass_pattern)),
        chords=tuple(_chords(harmony, progression, chord_style)),
        drums=tuple(_drums(rng, groove, len(progression), crash)),
    )


def _lead_rhythm(rng: np.random.Generator, phrase_beats: float) -> list[tuple[float, float]]:
    """Varied note lengths, a few inner rests, and a rest that closes the phrase."""
    end = phrase_beats - float(rng.choice((1.0, 1.5, 2.0)))
    probabilities = rng.dirichlet(np.ones(len(LEAD_DURATIONS_BEATS)) * 2.0)
    position, rhythm = 0.0, []
    while position < end:
        duration = min(float(rng.choice(LEAD_DURATIONS_BEATS, p=probabilities)), end - position)
        if position == 0.0 or rng.random() > 0.12:
            rhythm.append((position, duration))
        position += duration
    return rhythm


def _lead(
    rng: np.random.Generator, harmony: _Harmony, progression: tuple[int, ...], register_step: int
) -> list[_Event]:
    """Two-bar motifs (A A B A ...) re-fitted to the chords: chord tones on strong beats,
    scale steps in between, and a cadence on the root."""
    phrase_beats = 2 * BEATS_PER_BAR
    rhythms = (_lead_rhythm(rng, phrase_beats), _lead_rhythm(rng, phrase_beats))
    moves = rng.choice(LEAD_MOVES, size=64)
    phrase_count = -(-len(progression) // 2)
    events = []
    for phrase in range(phrase_count):
        step = register_step
        rhythm = rhythms[1 if phrase % 4 == 2 else 0]
        for index, (start, duration) in enumerate(rhythm):
            beat = phrase * phrase_beats + start
            bar = int(beat // BEATS_PER_BAR)
            if bar >= len(progression):
                break
            step = int(np.clip(step + moves[index], register_step - 4, register_step + 7))
            if phrase == phrase_count - 1 and index == len(rhythm) - 1:
                step = _nearest(step, (progression[bar],))
            elif start % 2 == 0:
                step = _nearest(step, harmony.chord_steps(progression[bar]))
            velocity = (0.85 if start % 2 == 0 else 0.7) + float(rng.uniform(-0.05, 0.05))
            events.append((beat, duration, harmony.midi(step), velocity))
    return events


def _nearest(step: int, chord_steps: tuple[int, ...]) -> int:
    """The chord tone (in any octave) closest to a scale step."""
    candidates = [tone % 7 + 7 * octave for tone in chord_steps for octave in range(-2, 4)]
    return min(candidates, key=lambda candidate: abs(candidate - step))


def _bass(harmony: _Harmony, progression: tuple[int, ...], pattern: str) -> list[_Event]:
    """A bass pattern over each chord root, two octaves below the tonic."""
    roots = [
        harmony.midi(degree, -24) - (12 if harmony.scale[degree] > 6 else 0)
        for degree in progression
    ]
    events = []
    for bar, degree in enumerate(progression):
        root, next_root = roots[bar], roots[(bar + 1) % len(roots)]
        offsets = {
            "root": 0,
            "third": harmony.midi(degree + 2) - harmony.midi(degree),
            "fifth": harmony.midi(degree + 4) - harmony.midi(degree),
            "octave": 12,
            "approach": next_root - root - 1,
        }
        for start, duration, function in BASS_PATTERNS[pattern]:
            events.append((bar * BEATS_PER_BAR + start, duration, root + offsets[function], 0.8))
    return events


def _chords(harmony: _Harmony, progression: tuple[int, ...], style: str) -> list[_Event]:
    """Chord tones voiced close above G3 as pads, stabs or arpeggios."""
    events = []
    for bar, degree in enumerate(progression):
        pitches = sorted(
            55 + (harmony.midi(step) - 55) % 12 for step in harmony.chord_steps(degree)
        )
        bar_beat = bar * BEATS_PER_BAR
        if style == "arpeggio":
            tones = pitches[:3] + [pitches[0] + 12]
            events += [
                (bar_beat + index / 2, 0.5, tones[order], 0.6)
                for index, order in enumerate(ARPEGGIO_ORDER)
            ]
            continue
        for start, duration in CHORD_RHYTHMS[style]:
            events += [(bar_beat + start, duration, pitch, 0.5) for pitch in pitches]
    return events


def _drums(
    rng: np.random.Generator, groove: str, bars: int, crash: bool
) -> list[tuple[float, str, float]]:
    """A groove with accented downbeats, a snare fill closing the section, and an optional crash."""
    hits = [(0.0, "crash", DRUM_VELOCITIES["crash"])] if crash else []
    for bar in range(bars):
        fill = bar == bars - 1 and bars >= 4 and groove != "sparse"
        for kind, grid in DRUM_PATTERNS[groove].items():
            for step in (step for step, symbol in enumerate(grid) if symbol == "x"):
                if fill and step >= 12 and kind != "hat":
                    continue
                accent = 1.0 if step % 4 == 0 else 0.75
                velocity = DRUM_VELOCITIES[kind] * accent * float(rng.uniform(0.85, 1.0))
                hits.append((bar * BEATS_PER_BAR + step / STEPS_PER_BEAT, kind, velocity))
        if fill:
            hits += [
                (bar * BEATS_PER_BAR + 3 + step / 4, "snare", 0.5 + 0.12 * step)
                for step in range(4)
            ]
    return hits


def _lay_out(
    plans: dict[str, _SectionPlan], structure: tuple[str, ...], beat_s: float, duration_s: float
) -> tuple[tuple[tuple, ...], tuple[Section, ...]]:
    """Place sections one after another (then verse/chorus again) until the song is long enough."""
    labels = itertools.chain(structure, itertools.cycle(("verse", "chorus")))
    lead, bass, chords, drums, sections = [], [], [], [], []
    section_beat = 0.0
    while section_beat * beat_s < duration_s:
        label = next(labels)
        plan = plans[label]
        start_s = section_beat * beat_s
        sections.append(
            Section(label, start_s, min(plan.bars * BEATS_PER_BAR * beat_s, duration_s - start_s))
        )
        for notes, events in ((lead, plan.lead), (bass, plan.bass), (chords, plan.chords)):
            for start, length, pitch, velocity in events:
                note_start_s = (section_beat + start) * beat_s
                if note_start_s < duration_s:
                    note_duration_s = min(length * beat_s, duration_s - note_start_s)
                    notes.append(Note(note_start_s, note_duration_s, pitch, velocity))
        for start, kind, velocity in plan.drums:
            if (section_beat + start) * beat_s < duration_s:
                drums.append(DrumHit((section_beat + start) * beat_s, kind, velocity))
        section_beat += plan.bars * BEATS_PER_BAR
    parts = tuple(
        tuple(sorted(part, key=lambda note: note.start_s)) for part in (lead, bass, chords, drums)
    )
    return parts, tuple(sections)
