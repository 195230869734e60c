"""Melody retrieval for hummed or sung queries: key-invariant matching of pitch contours.

Two stages, as in query-by-humming systems that search audio (Ryynänen & Klapuri 2008: melodic
fragments found by approximate nearest-neighbour search, candidates re-ranked by alignment):

1. Candidates. A track's predominant pitch (acr.pitch) is pooled into cells of ``cell_s``; a
   cell is the pitch-class phasor ``exp(2πi·k·midi/12)`` for k = 1..``harmonics``, scaled by how
   much of the cell is voiced. Windows of ``window_s`` are rotated so that their mean pitch class
   sits at zero (key invariance), searched with hnswlib (WindowIndex), and vote per track with
   offset consistency, at a few tempo scales of the query.
2. Re-ranking. The whole query contour is correlated with each candidate's contour at every
   offset and tempo scale, maximised over transpositions: a matched filter on the pitch-class
   circle, whose harmonics k > 1 sharpen it from a cosine into a narrow peak.

Several lines. People hum the line they hear, which is not always the lead: a track is indexed
along its equal-loudness-weighted lead and along a second line tracked without that filter from
``bass_fmin_hz`` (the bass, or whatever sounds loudest), and matches by its better line, the
second line's score less ``bass_penalty``. Multiple melody candidates per track are the usual
answer of query-by-humming systems that search audio (Duda, Nürnberger & Stober 2007, "Towards
query by singing/humming on audio databases").

Pitch classes (octave-folded melody, as in the query-by-humming features of Salamon et al. 2013,
"Tonal representations for music retrieval") make the match immune to octave errors, the
commonest error of melody extraction in polyphonic music (Salamon et al. 2014, "Melody extraction
from polyphonic music signals"), and to the octave a person hums in.
"""

from __future__ import annotations

from collections.abc import Callable, Collection, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import ClassVar

import numpy as np

from acr.files import write_json
from acr.pitch import Line, PitchTrack, pitch_lines, pitch_lines_in_spans, predominant_pitch
from acr.retrieval.engine import (
    Engine,
    TrackMatch,
    check_index,
    read_index_json,
    read_settings,
    reading,
)
from acr.retrieval.windows import WindowIndex

TRANSPOSITION_STEPS = 24  # transpositions tried in re-ranking: every half semitone

_TRANSPOSITIONS = 2 * np.pi * np.arange(TRANSPOSITION_STEPS) / TRANSPOSITION_STEPS


@dataclass(frozen=True)
class MelodyContour:
    """A melody pooled into fixed cells: pitch (MIDI, NaN where unvoiced), voiced fraction."""

    pitch_midi: np.ndarray
    voiced_fraction: np.ndarray

    def phasors(self, harmonics: int) -> np.ndarray:
        """[harmonics, cells] complex: voiced_fraction * exp(2πi k midi / 12), 0 where unvoiced."""
        angle = 2 * np.pi * np.nan_to_num(self.pitch_midi) / 12
        multiples = np.arange(1, harmonics + 1)[:, None]
        return (self.voiced_fraction * np.exp(1j * multiples * angle)).astype(np.complex64)


def pool_contour(track: PitchTrack, cell_s: float, scale: float = 1.0) -> MelodyContour:
    """Cells of ``cell_s * scale`` seconds (rounded to whole frames; a scale above 1 reads a slow
    query at the catalog's tempo). A cell's pitch is the lower median of its voiced frames: a
    pitch that was sung, never the mean of two octaves."""
    frames_per_cell = max(1, round(cell_s * scale / track.hop_s))
    cells = len(track.f0_hz) // frames_per_cell
    usable = cells * frames_per_cell
    voiced = track.voiced[:usable].reshape(cells, frames_per_cell)
    midi = np.where(track.voiced, track.midi, np.inf)[:usable].reshape(cells, frames_per_cell)
    count = voiced.sum(axis=1)
    lower_median = np.sort(midi, axis=1)[np.arange(cells), np.maximum(count - 1, 0) // 2]
    pitch_midi = np.where(count > 0, lower_median, np.nan).astype(np.float32)
    return MelodyContour(pitch_midi, (count / frames_per_cell).astype(np.float32))


Lines = tuple[MelodyContour, ...]  # a track's contours: the lead line first, then the bass


@dataclass(frozen=True)
class MelodyExtractor:
    """Audio -> the contour of each of ``lines``; picklable, stateless (runs in indexing worker
    processes)."""

    sample_rate: int
    hop_s: float
    cell_s: float
    lines: tuple[Line, ...]

    def __call__(self, audio: np.ndarray) -> Lines:
        tracks = pitch_lines(audio, self.sample_rate, self.lines, self.hop_s)
        return tuple(pool_contour(track, self.cell_s) for track in tracks)

    def in_spans(self, read: Callable[[int, int], np.ndarray]) -> Lines:
        """The contours of a long track read in spans (``read(start, stop)``), in bounded
        memory: acr.pitch.pitch_lines_in_spans."""
        tracks = pitch_lines_in_spans(read, self.sample_rate, self.lines, self.hop_s)
        return tuple(pool_contour(track, self.cell_s) for track in tracks)


def window_vectors(
    phasors: np.ndarray,
    voiced_fraction: np.ndarray,
    window_cells: int,
    hop_cells: int,
    min_voiced: float,
) -> tuple[np.ndarray, np.ndarray]:
    """Key-normalised unit vectors of the windows that are at least ``min_voiced`` voiced, and
    their first cells. Each window is rotated by its circular mean pitch class (harmonic k by k
    times that angle), so a transposed melody gives the same vector."""
    harmonics, cells = phasors.shape
    starts = np.arange(0, cells - window_cells + 1, hop_cells)
    cell_index = starts[:, None] + np.arange(window_cells)
    starts = starts[voiced_fraction[cell_index].mean(axis=1) >= min_voiced]
    cell_index = starts[:, None] + np.arange(window_cells)
    windows = phasors[:, cell_index]  # [harmonics, windows, cells]
    mean_class = windows[0].sum(axis=1)
    key = np.exp(-1j * np.angle(mean_class))
    windows = windows * key[None, :, None] ** np.arange(1, harmonics + 1)[:, None, None]
    vectors = np.concatenate([windows.real, windows.imag]).transpose(1, 0, 2)
    vectors = vectors.reshape(len(starts), 2 * harmonics * window_cells)
    norms = np.linalg.norm(vectors, axis=1, keepdims=True)
    return (vectors / np.maximum(norms, 1e-9)).astype(np.float32), starts


def alignment_scores(
    query: np.ndarray, query_weight: np.ndarray, reference: np.ndarray, reference_weight: np.ndarray
) -> np.ndarray:
    """Normalised correlation of a query contour with a reference at every offset, maximised
    over transpositions: sum_k Re(e^{-ikt} sum_i r_k[o+i] conj(q_k[i])), with the reference
    counted only where the query is voiced (a hum's rests match anything)."""
    harmonics, length = query.shape
    if reference.shape[1] < length:
        missing = length - reference.shape[1]
        reference = np.pad(reference, ((0, 0), (0, missing)))
        reference_weight = np.pad(reference_weight, (0, missing))
    correlations = np.stack(
        # np.correlate conjugates its second argument like scipy's, without scipy's per-call
        # method selection, which dominated the time for these short queries.
        [np.correlate(reference[k], query[k], mode="valid") for k in range(harmonics)]
    )
    angles = np.outer(np.arange(1, harmonics + 1), _TRANSPOSITIONS)  # Re(c e^{-ia}), as matmuls:
    cosine, sine = np.cos(angles).astype(np.float32), np.sin(angles).astype(np.float32)
    real, imaginary = correlations.real.T.astype(np.float32), correlations.imag.T.astype(np.float32)
    agreement = (real @ cosine + imaginary @ sine).max(axis=1) / harmonics
    sung = (query_weight > 0).astype(np.float32)
    reference_energy = np.correlate(np.square(reference_weight), sung, mode="valid")
    norms = np.sqrt(np.maximum(reference_energy, 0) * np.square(query_weight).sum())
    return np.where(norms > 1e-9, agreement / np.maximum(norms, 1e-9), 0.0)


@dataclass(frozen=True)
class MelodySettings:
    """Settings of the melody engine, recorded in the index.

    Args:
        sample_rate: audio rate in Hz of ``extractor`` input and ``search`` queries.
        hop_s: predominant-pitch frame hop, in seconds.
        fmin_hz: lowest pitch of the lead line (and of queries), in Hz.
        fmax_hz: highest pitch searched, in Hz.
        bass_fmin_hz: lowest pitch of a second line of each track, tracked without the
            equal-loudness filter: the bass, or whatever sounds loudest, which is what many
            people hum; 0 indexes the lead line only.
        bass_penalty: taken off the second line's alignment score, so that the lead line wins
            near-ties (chosen as the least that costs acr's own hums of the lead nothing).
        cell_s: contour resolution in seconds; notes are rarely shorter than 0.1 s.
        window_s: catalog window for the candidate search, in seconds.
        window_hop_s: hop between catalog windows, in seconds.
        query_hop_s: hop between query windows, in seconds (finer than the catalog's, so some
            query window lines up).
        harmonics: pitch-class harmonics per cell (1 = plain circle; 3 is sharper).
        tempo_scales: query tempo ratios tried (hummers drift from the recording's tempo).
        candidates: tracks re-ranked by alignment; a catalog this small is re-ranked whole.
            40 rather than 20 since the bass line's windows share the window search (20 lost
            acr's own hums of the lead 4 points at 3 s).
        neighbors: nearest windows per query window in the candidate search.
        min_voiced: voiced fraction (0-1) a window needs to be indexed or searched.
        min_query_voiced_s: a query with less voiced pitch than this, in seconds, returns no
            matches.
    """

    sample_rate: int = 16000
    hop_s: float = 0.01
    fmin_hz: float = 80.0
    fmax_hz: float = 1000.0
    bass_fmin_hz: float = 50.0
    bass_penalty: float = 0.03
    cell_s: float = 0.1
    window_s: float = 2.0
    window_hop_s: float = 0.2
    query_hop_s: float = 0.1
    harmonics: int = 3
    tempo_scales: tuple[float, ...] = (0.9, 1.0, 1.1)
    candidates: int = 40
    neighbors: int = 20
    min_voiced: float = 0.5
    min_query_voiced_s: float = 1.0

    # Indexes written before the bass line had the lead line only.
    UNRECORDED: ClassVar[dict[str, object]] = {"bass_fmin_hz": 0.0, "bass_penalty": 0.0}

    def __post_init__(self) -> None:
        object.__setattr__(self, "tempo_scales", tuple(float(s) for s in self.tempo_scales))
        if not 0 <= self.bass_fmin_hz < self.fmax_hz:
            raise ValueError(f"bass_fmin_hz must be 0 (no bass line) or below fmax_hz, not"
                             f" {self.bass_fmin_hz}")  # fmt: skip

    @property
    def lines(self) -> tuple[Line, ...]:
        """The lines each catalog track is tracked along: the lead, and the bass unless
        ``bass_fmin_hz`` is 0."""
        lead = Line(self.fmin_hz, self.fmax_hz)
        if not self.bass_fmin_hz:
            return (lead,)
        return lead, Line(self.bass_fmin_hz, self.fmax_hz, equal_loudness=False)

    def extractor(self) -> MelodyExtractor:
        """The catalog side of these settings: what indexing workers run."""
        return MelodyExtractor(self.sample_rate, self.hop_s, self.cell_s, self.lines)


class MelodyEngine(Engine):
    """Query by humming over a catalog of recordings (see the module docstring)."""

    name = "melody"

    def __init__(self, settings: MelodySettings | None = None) -> None:
        self.settings = settings = settings or MelodySettings()
        self._window_cells = round(settings.window_s / settings.cell_s)
        self._index = WindowIndex(2 * settings.harmonics * self._window_cells)
        self._contours: dict[str, Lines] = {}
        self._phasors: dict[str, list[np.ndarray]] = {}  # per track and line, on first alignment

    def extractor(self) -> MelodyExtractor:
        return self.settings.extractor()

    @property
    def track_ids(self) -> list[str]:
        return list(self._contours)

    @property
    def item_count(self) -> int:
        return len(self._index)

    def add(self, track_id: str, features: Lines) -> int:
        """Index one track's contours, one per line of the settings; returns the number of
        windows they put in the index (a window of any line votes for the track)."""
        if track_id in self._contours:
            raise ValueError(f"track {track_id!r} is already in the index")
        if len(features) != len(self.settings.lines):
            raise ValueError(
                f"track {track_id!r}: {len(features)} melody lines, the settings track"
                f" {len(self.settings.lines)}"
            )
        hop_cells = round(self.settings.window_hop_s / self.settings.cell_s)
        windows = [self._windows(line, hop_cells) for line in features]
        vectors = np.concatenate([vectors for vectors, _ in windows])
        starts = np.concatenate([starts for _, starts in windows])
        if len(vectors):
            self._index.add(track_id, vectors, starts * self.settings.cell_s)
        self._contours[track_id] = tuple(features)
        return len(vectors)

    def search(self, audio: np.ndarray, top_k: int = 5) -> list[TrackMatch]:
        """Tracks whose melody the query hums, best first; [] for a query without enough melody."""
        track = predominant_pitch(
            audio,
            self.settings.sample_rate,
            self.settings.hop_s,
            self.settings.fmin_hz,
            self.settings.fmax_hz,
        )
        if (
            not self._contours
            or track.voiced.sum() * track.hop_s < self.settings.min_query_voiced_s
        ):
            return []
        queries = [
            pool_contour(track, self.settings.cell_s, scale) for scale in self.settings.tempo_scales
        ]
        candidates = self._candidates(queries)
        query_phasors = [(q.phasors(self.settings.harmonics), q.voiced_fraction) for q in queries]
        matches = [self._align(track_id, query_phasors) for track_id in candidates]
        return sorted(matches, key=lambda match: -match.score)[:top_k]

    def _windows(self, contour: MelodyContour, hop_cells: int) -> tuple[np.ndarray, np.ndarray]:
        return window_vectors(
            contour.phasors(self.settings.harmonics),
            contour.voiced_fraction,
            self._window_cells,
            max(1, hop_cells),
            self.settings.min_voiced,
        )

    def _candidates(self, queries: list[MelodyContour]) -> list[str]:
        """Every track of a small catalog; otherwise the best-voted tracks of the window search,
        each scored by its best tempo scale."""
        if len(self._contours) <= self.settings.candidates:
            return self.track_ids
        votes: dict[str, float] = {}
        for query in queries:
            vectors, starts = self._windows(
                query, round(self.settings.query_hop_s / self.settings.cell_s)
            )
            if len(vectors) == 0 or len(self._index) == 0:
                continue
            # Query cells sit at the catalog tempo: cell c is c * cell_s into the track.
            ranked = self._index.rank_tracks(
                vectors,
                starts * self.settings.cell_s,
                self.settings.candidates,
                self.settings.neighbors,
            )
            for match in ranked:
                votes[match.track_id] = max(votes.get(match.track_id, 0.0), match.score)
        return sorted(votes, key=lambda track_id: -votes[track_id])[: self.settings.candidates]

    def _align(self, track_id: str, queries: list[tuple[np.ndarray, np.ndarray]]) -> TrackMatch:
        """The candidate's best alignment over its lines (the bass's less ``bass_penalty``),
        the query's tempo scales (phasors, voiced fraction) and offsets."""
        lines = self._contours[track_id]
        if track_id not in self._phasors:
            self._phasors[track_id] = [line.phasors(self.settings.harmonics) for line in lines]
        best_score, best_offset = -np.inf, 0
        for number, (line, phasors) in enumerate(zip(lines, self._phasors[track_id])):
            penalty = self.settings.bass_penalty if number else 0.0
            for query_phasors, query_voiced in queries:
                scores = alignment_scores(
                    query_phasors, query_voiced, phasors, line.voiced_fraction
                )
                offset = int(np.argmax(scores))
                if scores[offset] - penalty > best_score:
                    best_score, best_offset = float(scores[offset]) - penalty, offset
        return TrackMatch(track_id, best_score, best_offset * self.settings.cell_s)

    def save(self, directory: Path) -> None:
        """settings.json, contours.npz (all tracks' cells, concatenated: ``[lines, cells]``)
        and the window index."""
        directory = Path(directory)
        directory.mkdir(parents=True, exist_ok=True)
        if any(directory.iterdir()):
            raise FileExistsError(f"{directory}: not empty")
        tracks = list(self._contours.values())
        empty = np.zeros((len(self.settings.lines), 0), np.float32)
        np.savez(
            directory / "contours.npz",
            pitch_midi=np.concatenate([[c.pitch_midi for c in t] for t in tracks] or [empty], 1),
            voiced_fraction=np.concatenate(
                [[c.voiced_fraction for c in t] for t in tracks] or [empty], 1
            ),
            cells=np.array([len(t[0].pitch_midi) for t in tracks], dtype=np.int64),
        )
        state = {"engine": self.name, "settings": asdict(self.settings)}
        write_json(directory / "settings.json", {**state, "track_ids": self.track_ids})
        if len(self._index):
            self._index.save(directory / "windows")

    def remove(self, track_ids: Collection[str]) -> None:
        unknown = [track_id for track_id in track_ids if track_id not in self._contours]
        if unknown:
            raise KeyError(f"track {unknown[0]!r} is not in the index")
        for track_id in track_ids:
            del self._contours[track_id]
            self._phasors.pop(track_id, None)
        self._index.remove([t for t in track_ids if t in set(self._index.track_ids)])

    @classmethod
    def open(
        cls, directories: Sequence[Path], removed: Sequence[Collection[str]] = ()
    ) -> MelodyEngine:
        """The parts written by :meth:`save` as one engine, without each part's ``removed``
        tracks; a missing, corrupt or inconsistent file raises IndexDirectoryError naming it."""
        engine: MelodyEngine | None = None
        window_parts, window_removed = [], []
        for number, directory in enumerate(directories):
            directory = Path(directory)
            settings, contours = _read_part(directory)
            if engine is None:
                engine = cls(settings)
            settings_path = directory / "settings.json"
            check_index(
                settings == engine.settings,
                settings_path,
                f"settings differ from those of {directories[0]}",
            )
            gone = set(removed[number]) if number < len(removed) else set()
            unknown = sorted(gone - set(contours))
            check_index(
                not unknown, settings_path, f"removed track {unknown[:1]} is not in this part"
            )
            for track_id, contour in contours.items():
                if track_id in gone:
                    continue
                check_index(
                    track_id not in engine._contours,
                    settings_path,
                    f"track {track_id!r} is also in another part",
                )
                engine._contours[track_id] = contour
            if (directory / "windows").is_dir():
                window_parts.append(directory / "windows")
                window_removed.append(gone)
        if engine is None:
            raise ValueError("no melody index parts to open")
        if window_parts:
            windows = WindowIndex.open(window_parts, window_removed)
            check_index(
                windows.dim == engine._index.dim
                and set(windows.track_ids) <= set(engine._contours),
                window_parts[0],
                f"{windows.dim}-d windows of {len(windows.track_ids)} tracks for"
                f" {engine._index.dim}-d melody windows of {len(engine._contours)} tracks",
            )
            engine._index = windows
        return engine


def _read_part(directory: Path) -> tuple[MelodySettings, dict[str, Lines]]:
    """One part's settings and contours (a part written before the bass line holds 1-d
    arrays: the lead line's)."""
    settings_path, contours_path = directory / "settings.json", directory / "contours.npz"
    state = read_index_json(settings_path, ("engine", "settings", "track_ids"))
    check_index(
        state["engine"] == MelodyEngine.name,
        settings_path,
        f"written by engine {state['engine']!r}",
    )
    track_ids = state["track_ids"]
    check_index(
        isinstance(track_ids, list)
        and all(isinstance(t, str) for t in track_ids)
        and len(set(track_ids)) == len(track_ids),
        settings_path,
        "track_ids must be a list of distinct strings",
    )
    settings = read_settings(MelodySettings, state["settings"], settings_path)
    with reading(contours_path), np.load(contours_path, allow_pickle=False) as arrays:
        names = ("pitch_midi", "voiced_fraction", "cells")
        check_index(set(names) <= set(arrays.files), contours_path, "not a contour table")
        pitch_midi, voiced_fraction, cells = (arrays[name] for name in names)
    lines = len(settings.lines)
    if pitch_midi.ndim == voiced_fraction.ndim == 1 and lines == 1:
        pitch_midi, voiced_fraction = pitch_midi[None], voiced_fraction[None]
    check_index(
        cells.ndim == 1
        and np.issubdtype(cells.dtype, np.integer)
        and len(cells) == len(track_ids)
        and (cells >= 0).all(),
        contours_path,
        f"{cells.shape} cell counts for the {len(track_ids)} tracks of {settings_path.name}",
    )
    check_index(
        pitch_midi.shape == voiced_fraction.shape == (lines, int(cells.sum())),
        contours_path,
        f"{pitch_midi.shape} pitches and {voiced_fraction.shape} voiced fractions for"
        f" {lines} lines of {int(cells.sum())} cells",
    )
    bounds = np.cumsum(np.r_[0, cells])
    contours = {
        track_id: tuple(
            MelodyContour(pitch, voiced)
            for pitch, voiced in zip(pitch_midi[:, start:end], voiced_fraction[:, start:end])
        )
        for track_id, start, end in zip(track_ids, bounds[:-1], bounds[1:])
    }
    return settings, contours
