"""The landmark engine: sorted posting arrays, matched by offset voting under speed and pitch
hypotheses.

The index is two flat arrays sorted by hash (track, frame) and a row index: the distinct hashes,
sorted, and where each one's postings start (a binary search finds a query hash). An index
directory holds it in parts (segments, acr.retrieval.store), each memory-mapped and searched as
one. A query looks its hashes up and votes, per track, for the offset (reference frame - query
frame); the track whose best offset bin (with its two neighbours) collects most votes wins, and
that offset says where the query starts (Wang 2003).

Speed and pitch changes. Fixed-grid pair hashes fail once a query is played a few percent
faster or slower or transposed: every peak frequency is scaled, and on a linear STFT axis so is
every frequency difference. On the log-frequency peak map (acr.retrieval.fingerprint.landmarks)
a transposition moves every peak by the same number of bins. Indexing hashes one grid; search
re-hashes the query's landmarks under a few hypotheses, each voting in its own histogram: no change,
pitch shifts of +-1/3 to +-2 semitones in 1-bin steps, and speed factors 0.94, 0.97, 1.03 and
1.06 (frequency shift plus time scale; the votes use the scaled query time). Each query is also
analysed on two frame grids half a hop apart, as audfprint does (measured: pitch 97 -> 99 %,
clean offsets within 0.1 s 94 -> 99 %, for twice the query time).

Measured with experiments/bench_fingerprint.py (150 game-soundtrack tracks, 5.9 h, ~300 3-s
queries per degradation, 2 shared cores), top-1 for clean / noise 0-10 dB / reverb / speed
+-3-6 % / pitch +-1-2 semitones, and query latency p50:
    1 hypothesis (a fixed grid):       100 / 99.0 / 100 /   7.0 /  3.4 %,  7 ms
    + 4 speed hypotheses (5):          100 / 99.0 / 100 /  98.7 / 21.9 %, 14 ms
    + 12 pitch hypotheses (17, used):  100 / 98.7 / 100 / 100.0 / 98.3 %, 23 ms
(Latencies before the first pass was compiled (acr.retrieval.fingerprint.shortlist), which
halved them: 3-s queries on the 393-track, 16-h corpus went from 59 to 27 ms p50 with identical
answers. Galloping lookups, votes written once and arrays reused per thread then took triplet
3-s queries from 22 to 18 ms on the corpus and from 72 to 48 ms at 10^5 tracks (bench_scale),
again with identical answers.) More hypotheses cost only query time (the index is unchanged)
and a little noise robustness (more random matches to outvote). The figures above are for pair
hashes; triplets (``hash_peaks`` 3, for large catalogs) are searched under the same
hypotheses with pitch steps of half a bin. Panako's speed-invariant triplets (Six & Leman
2014, ratios of time differences) were not built: the hypotheses already meet the speed and
pitch targets, and a ratio field would spend hash bits the catalog's size needs.

Verification. A part also stores each track's coarse spectrogram (spectra.npy, 30 bytes a
frame), and a search re-ranks its ``verify_candidates`` best tracks by how alike they sound
where their votes place the query (acr.retrieval.fingerprint.verification): on the corpus's
field-suite queries top-1 rose from 90.5 to 92.3 %, most under crowds and in live mixes.
"""

from __future__ import annotations

import copy
import functools
from collections.abc import Collection, Iterable, Sequence
from dataclasses import asdict, dataclass, fields, replace
from pathlib import Path
from typing import ClassVar, NamedTuple

import numpy as np

from acr.files import write_json
from acr.retrieval.engine import (
    Engine,
    IndexDirectoryError,
    TrackMatch,
    check_index,
    check_track_ids,
    read_index_json,
    read_settings,
    reading,
)
from acr.retrieval.fingerprint import shortlist, verification
from acr.retrieval.fingerprint.landmarks import (
    SPECTRUM_FLOOR,
    SPECTRUM_STEP,
    LandmarkExtractor,
    Landmarks,
    Peaks,
    fill_unset,
)

SHORTLIST_OFFSET_FRAMES = 32  # ~1 s at 8 kHz and a 256-sample hop
SHORTLIST_TABLE = 1 << 20  # hashed (track, hypothesis, offset) cells counted per query
_SCRATCH = shortlist.Scratch(SHORTLIST_TABLE)  # per thread
MANIFEST_FILE = "fingerprint.json"
# The .npy files of a part: distinct hashes, where their postings start, the postings.
ARRAYS = {"keys": np.uint32, "starts": np.int64, "tracks": np.int32, "frames": np.int32}
# And the tracks' verification spectrograms: their frames one after another, and where each
# track's start (a part written before verification has neither).
SPECTRA = {"spectra": np.uint8, "spectrum_starts": np.int64}
MERGE_BLOCK_POSTINGS = 1 << 22  # postings sorted at a time when parts are merged (~64 MB)
# Pair hashes hold up to here (bench_scale: top-1 0.743 at 10^4 tracks, triplets 0.710) and
# collapse beyond (0.133 at 10^5, triplets 0.687): a build or an add past it says so.
PAIR_HASH_TRACKS = 10_000
# What a None search setting becomes, per hash_peaks (as LandmarkExtractor.PRESETS). A triplet
# needs three peaks to match, so a query forms more of them (6 targets: 15 an anchor) and its
# pitch hypotheses are twice as fine (on the corpus, pitch-shifted 3-s queries: 0.82 -> 0.97).
# A triplet hash with more than 100 postings is common enough to skip: at 10^5 tracks that
# raised top-1 from 0.657 to 0.687 and halved the search time (bench_scale); at 10^3 and 10^4
# top-1 stayed the same.
# A triplet query whose best track as it sounds has 20 votes is answered without the other
# hypotheses: on the corpus's 3,567 test queries (1, 3 and 10 s) that changed no answer of the
# full search and answered 40 % of them 5x sooner. A pair hash is common enough that a 10-s
# query gathers 30 chance votes, so pairs always search every hypothesis.
# A pair query keeps twice the catalog's peaks with twice its targets (60 a second, 10 targets):
# under a crowd, babble and room peaks push the catalog's peaks out of a query's strongest 30,
# and more of them back in bring their pairs. On the field suite's 1- and 3-s queries of the
# soundtrack corpus (393 tracks, experiments/bench_unseen.py) that raised top-1 from 83.1 to
# 86.0 % (noise 70 -> 76 at 1 s, 92 -> 97 at 3 s; live mixes 59 -> 71 at 3 s) and left acr's
# own split where it was (92.3 -> 92.6 %); 90 peaks, 15 targets or 4 grids added under a point.
QUERY_PRESETS = {
    2: {
        "query_peaks_per_second": 60.0,
        "query_fanout": 10,
        "pitch_step_semitones": 1.0 / 3.0,
        "max_postings_per_hash": 1000,
        "sure_votes": 0,
    },
    3: {
        "query_peaks_per_second": 30.0,
        "query_fanout": 6,
        "pitch_step_semitones": 1.0 / 6.0,
        "max_postings_per_hash": 100,
        "sure_votes": 20,
    },
}


@dataclass(frozen=True)
class FingerprintSettings(LandmarkExtractor):
    """Settings of the landmark engine, recorded in the index: the landmark extractor's (the
    first fourteen) and the search's.

    Args:
        sample_rate: audio rate in Hz that extraction and search work at (8 kHz keeps the band
            where music has most peaks and halves the work of 16 kHz).
        fft_size: STFT window in samples (128 ms at 8 kHz: it separates semitones down to
            about 130 Hz).
        hop_size: STFT hop in samples (32 ms at 8 kHz).
        min_frequency_hz: centre of the lowest log-frequency bin, in Hz.
        bin_count: log-frequency bins (180 at 36 per octave: 120-3840 Hz).
        bins_per_octave: log-frequency bins per octave (36: a third of a semitone each).
        peak_radius_bins: a peak is the maximum of this many bins either side.
        peak_radius_frames: and of this many frames either side.
        peaks_per_second: strongest peaks kept per second of catalog audio (index density;
            default 22 for triplets, 30 for pairs).
        fanout: targets considered per anchor peak of a catalog track (a triplet takes two of
            them: 4 targets make 6 triplets an anchor; default 4 for triplets, 5 for pairs).
        max_pair_frames: the target zone's length in frames (also a hash field's range; default
            31 for triplets, which leaves room in 32 bits for two targets, 63 for pairs).
        max_pair_bins: the target zone's height in bins either way (also a hash field's range).
        hash_peaks: peaks per hash: 2 (pairs, 21 bits, acr 0.2's landmarks: the more robust,
            top-1 0.83 against 0.73 on the corpus's test queries, but a hash names ~1/62,000
            of the postings, too many beyond ~10^4 tracks) or 3 (an anchor and two targets,
            32 bits, 1/4.6 million: for catalogs of 10^4-10^5 tracks; README "Scaling").
        verification_bands: bands of the coarse spectrogram stored per track to verify
            candidates with (30: two semitones each, 0.9 kB a second of audio, 3.4 MB an
            hour; 0 stores none, as in indexes built before verification).
        query_peaks_per_second: strongest peaks kept per second of a query (default 60 for
            pairs, twice the catalog's; 30 for triplets).
        query_fanout: targets considered per anchor peak of a query (more than ``fanout``, so
            a peak lost or added by noise still leaves the catalog's landmarks among the
            query's; default 6 for triplets, 10 for pairs).
        query_shifts: frame grids per query, offset by fractions of a hop.
        min_query_s: shorter queries, in seconds, return no match (too few peaks to mean
            anything).
        max_pitch_shift_semitones: largest pure pitch-shift hypothesis, in semitones.
        pitch_step_semitones: step between pitch-shift hypotheses, in semitones (default 1/6
            for triplets, 1/3 for pairs).
        speed_factors: turntable speed hypotheses (pitch and tempo together), as playback-rate
            factors.
        offset_bin_frames: width of an offset histogram bin, in frames.
        max_postings_per_hash: hashes more common than this in the index are skipped (they
            vote everywhere and cost most of the search time; default 1000 for pairs, 100 for
            triplets).
        min_votes: tracks whose best offset bin has fewer votes are not returned.
        candidate_groups: (track, hypothesis) pairs with the most raw hash matches that get
            an offset histogram; the rest are dropped unsorted, which keeps search time nearly
            flat in catalog size (audfprint shortlists tracks by raw hash count the same way).
        sure_votes: a search first tries the query as it sounds (no speed or pitch change, one
            hypothesis of many) and stops there when the best track has at least this many
            votes (most queries are neither sped up nor transposed); 0 always searches every
            hypothesis.
        changed_vote_ratio: a track found under a speed or pitch change replaces the best
            track as the query sounds only with this many times its votes. Every hypothesis
            searched adds chance votes, so a noisy or reverberant query's best chance match
            under some hypothesis can outvote its true track as it sounds; 1 takes the best
            of all hypotheses as it is. On the corpus's test queries 1.5 raised top-1 from
            0.732 to 0.749 with triplets and from 0.832 to 0.836 with pairs (1, 3 and 10 s;
            triplets: live mixes +7 points, reverb +6, pitch-shifted -3, sped-up -1).
        verify_candidates: the best tracks by votes that are re-ranked by how alike they
            sound where their votes place the query
            (acr.retrieval.fingerprint.verification); 0 ranks by votes alone, as does an
            index without verification spectrograms.
    """

    query_peaks_per_second: float | None = None
    query_fanout: int | None = None
    query_shifts: int = 2
    min_query_s: float = 0.5
    max_pitch_shift_semitones: float = 2.0
    pitch_step_semitones: float | None = None
    speed_factors: tuple[float, ...] = (0.94, 0.97, 1.03, 1.06)
    offset_bin_frames: int = 1
    max_postings_per_hash: int | None = None
    min_votes: int = 2
    candidate_groups: int = 64
    sure_votes: int | None = None
    changed_vote_ratio: float = 1.5
    verify_candidates: int = 10

    # What an index written before a setting existed did: pair hashes before triplets, no
    # verification spectrograms before verification (so its verify_candidates has nothing to
    # verify with, whatever it is).
    UNRECORDED: ClassVar[dict[str, object]] = {
        "hash_peaks": 2,
        "verification_bands": 0,
        "verify_candidates": 10,
    }

    def __post_init__(self) -> None:
        """Settings that cannot work fail here, when a command line or an index is read."""
        super().__post_init__()  # the landmark presets, the hash width and the top filter
        fill_unset(self, QUERY_PRESETS[self.hash_peaks])
        object.__setattr__(self, "speed_factors", tuple(float(f) for f in self.speed_factors))
        if self.pitch_step_semitones <= 0:
            raise ValueError(f"pitch_step_semitones must be > 0, got {self.pitch_step_semitones}")
        if self.sure_votes < 0:
            raise ValueError(f"sure_votes must be >= 0, got {self.sure_votes}")
        if self.changed_vote_ratio < 1:
            raise ValueError(f"changed_vote_ratio must be >= 1, got {self.changed_vote_ratio}")
        if self.verify_candidates < 0:
            raise ValueError(f"verify_candidates must be >= 0, got {self.verify_candidates}")

    def catalog_warning(self, tracks: int) -> str | None:
        """What to tell someone indexing ``tracks`` tracks with these settings, if anything."""
        if self.hash_peaks == 2 and tracks > PAIR_HASH_TRACKS:
            return (
                f"fingerprint: {tracks:,} tracks with pair hashes (hash_peaks 2): beyond"
                f" {PAIR_HASH_TRACKS:,} tracks a pair hash is too common to search well"
                ' (README "Scaling"); build the index with --fingerprint.hash_peaks 3'
            )
        return None

    def extractor(self) -> LandmarkExtractor:
        """The catalog side of these settings alone: what indexing workers run (and pickle)."""
        return LandmarkExtractor(
            **{field.name: getattr(self, field.name) for field in fields(LandmarkExtractor)}
        )


class Hypothesis(NamedTuple):
    """How the query may differ from the reference: it sounds ``shift_bins`` log-frequency bins
    higher, and ``time_scale`` reference frames pass per query frame."""

    shift_bins: float
    time_scale: float


@dataclass
class Postings:
    """One part of a landmark index: its tracks' postings sorted by hash, and which of its
    tracks are live (a removed track stays in a part's arrays until compaction)."""

    keys: np.ndarray  # uint32 distinct hashes, increasing
    starts: np.ndarray  # int64 [len(keys) + 1]: keys[i]'s postings are [starts[i], starts[i+1])
    tracks: np.ndarray  # int32 track number within the part
    frames: np.ndarray  # int32 anchor frame
    live: np.ndarray  # bool per track of the part
    first_track: int  # the engine's number of the part's track 0
    source: Path | None = None  # the folder it was read from, to name in errors
    spectra: np.ndarray | None = None  # uint8 [frames, bands]: its tracks' one after another
    spectrum_starts: np.ndarray | None = None  # int64 [tracks + 1]: where each track's start

    def spectrum(self, track: int, first: int, end: int) -> np.ndarray | None:
        """Frames [first, end) (fewer past the track's end) of the verification spectrogram of
        the part's track number ``track``, uint8 [frames, bands]; None where the part holds
        none."""
        if self.spectra is None or self.spectrum_starts is None:
            return None
        # The row index was checked whole at load (_read_spectra).
        start, stop = int(self.spectrum_starts[track]), int(self.spectrum_starts[track + 1])
        return self.spectra[min(start + first, stop) : min(start + end, stop)]

    @classmethod
    def from_unsorted(
        cls, keys: np.ndarray, tracks: np.ndarray, frames: np.ndarray, **kwargs
    ) -> Postings:
        """Postings from (hash, track, frame) triples in track order (a stable sort keeps ties
        in track order)."""
        order = np.argsort(keys, kind="stable")
        distinct, first = np.unique(keys[order], return_index=True)
        starts = np.r_[first, len(keys)].astype(np.int64)
        return cls(distinct.astype(np.uint32), starts, tracks[order], frames[order], **kwargs)

    def ranges(self, hashes: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Where each hash's postings start and end (an empty range for one not here); fastest
        for sorted hashes."""
        firsts, ends, problem = shortlist.find_ranges(
            self.keys, self.starts, hashes, len(self.tracks)
        )
        if problem == shortlist.KEYS_OUT_OF_ORDER:
            raise self.damaged("keys.npy", "hashes not increasing")
        if problem == shortlist.STARTS_OUT_OF_ORDER:
            raise self.damaged("starts.npy", "not a row index of tracks.npy")
        return firsts, ends

    def damaged(self, file: str = "tracks.npy", problem: str = "") -> IndexDirectoryError:
        problem = problem or f"track numbers outside the {len(self.live)} tracks of {MANIFEST_FILE}"
        return IndexDirectoryError(f"{self.source or 'fingerprint index'}/{file}: {problem}")


class FingerprintEngine(Engine):
    """Landmark engine (see the module docstring); ``settings`` are its FingerprintSettings."""

    name: ClassVar[str] = "fingerprint"

    def __init__(self, settings: FingerprintSettings | None = None) -> None:
        self.settings = settings or FingerprintSettings()
        self._extractor = self.settings.extractor()
        self._track_ids: list[str] = []  # every track of every part, removed ones too
        self._live: dict[str, int] = {}  # live track id -> its number, in adding order
        self._parts: list[Postings] = []  # read from disk
        # Tracks added in this process: per-track chunks, sorted into one in-memory part on the
        # first search or save (concatenating on every add would be quadratic).
        self._added: list[tuple[np.ndarray, np.ndarray, np.ndarray]] = []
        self._added_spectra: list[np.ndarray] = []
        self._added_count = 0
        self._memory: Postings | None = None

    def extractor(self) -> LandmarkExtractor:
        return self._extractor

    @property
    def track_ids(self) -> list[str]:
        return list(self._live)

    @property
    def item_count(self) -> int:
        """Postings stored, those of removed tracks included until the parts are merged."""
        return sum(len(part.tracks) for part in self._parts) + self._added_count

    def add(self, track_id: str, features: Landmarks) -> int:
        if track_id in self._live:
            raise ValueError(f"track {track_id!r} is already in the index")
        hashes = np.asarray(features.hashes, dtype=np.uint32)
        frames = np.asarray(features.frames, dtype=np.int32)
        if hashes.shape != frames.shape or hashes.ndim != 1:
            raise ValueError(f"track {track_id!r}: hashes and frames must be equal-length 1-D")
        bands = self.settings.verification_bands
        spectrum = getattr(features, "spectrum", None)
        if bands and (
            spectrum is None or spectrum.dtype != np.uint8 or spectrum.shape[1:] != (bands,)
        ):
            found = None if spectrum is None else f"{spectrum.dtype} {spectrum.shape}"
            raise ValueError(
                f"track {track_id!r}: expected a uint8 verification spectrogram of {bands}"
                f" bands (verification_bands), found {found}"
            )
        first_added = sum(len(part.live) for part in self._parts)
        self._added.append(
            (hashes, np.full(len(hashes), len(self._track_ids) - first_added, np.int32), frames)
        )
        if bands:
            self._added_spectra.append(spectrum)
        self._live[track_id] = len(self._track_ids)
        self._track_ids.append(track_id)
        self._added_count += len(hashes)
        self._memory = None
        return len(hashes)

    def remove(self, track_ids: Collection[str]) -> None:
        """Stop returning these tracks (their postings stay until the parts are merged)."""
        unknown = [track_id for track_id in track_ids if track_id not in self._live]
        if unknown:
            raise KeyError(f"track {unknown[0]!r} is not in the index")
        for track_id in track_ids:
            number = self._live.pop(track_id)
            for part in self._all_parts():
                if part.first_track <= number < part.first_track + len(part.live):
                    part.live[number - part.first_track] = False

    def _all_parts(self) -> list[Postings]:
        """The parts read from disk, then the tracks added here as one sorted part."""
        if self._added and self._memory is None:
            keys, tracks, frames = (np.concatenate(column) for column in zip(*self._added))
            first = sum(len(part.live) for part in self._parts)
            live = np.array([t in self._live for t in self._track_ids[first:]], dtype=bool)
            spectra = starts = None
            if self._added_spectra:
                spectra = np.concatenate(self._added_spectra)
                lengths = [len(spectrum) for spectrum in self._added_spectra]
                starts = np.r_[0, np.cumsum(lengths)].astype(np.int64)
            self._memory = Postings.from_unsorted(
                keys, tracks, frames, live=live, first_track=first,
                spectra=spectra, spectrum_starts=starts,
            )  # fmt: skip
        return [*self._parts, *([self._memory] if self._added else [])]

    @functools.cached_property
    def hypotheses(self) -> list[Hypothesis]:
        """Identity, pure pitch shifts, then turntable speed changes (pitch and tempo together)."""
        bins_per_semitone = self._extractor.bins_per_octave / 12.0
        steps = int(
            round(self.settings.max_pitch_shift_semitones / self.settings.pitch_step_semitones)
        )
        semitones = [step * self.settings.pitch_step_semitones for step in range(-steps, steps + 1)]
        pitch = [Hypothesis(shift * bins_per_semitone, 1.0) for shift in semitones if shift]
        speed = [
            Hypothesis(self._extractor.bins_per_octave * float(np.log2(factor)), factor)
            for factor in self.settings.speed_factors
        ]
        return [Hypothesis(0.0, 1.0), *pitch, *speed]

    def with_search_settings(self, **changes: object) -> FingerprintEngine:
        """This index searched with other search settings (those after the landmark
        extractor's in FingerprintSettings: speed and pitch hypotheses, query density...),
        sharing its postings. acr monitor widens the speed hypotheses to a DJ's +-8 %."""
        fixed = {field.name for field in fields(LandmarkExtractor)} & set(changes)
        if fixed:
            raise ValueError(f"{', '.join(sorted(fixed))}: set when the index was built")
        engine = copy.copy(self)
        engine.settings = replace(self.settings, **changes)
        engine.__dict__.pop("hypotheses", None)  # a cached_property of the settings
        return engine

    def search(self, audio: np.ndarray, top_k: int = 5) -> list[TrackMatch]:
        """The best tracks, searched under every hypothesis; with ``sure_votes`` or
        ``changed_vote_ratio``, first as the query sounds (no speed or pitch change)."""
        audio = np.asarray(audio, dtype=np.float32)
        if len(audio) < self.settings.min_query_s * self.settings.sample_rate or not self._live:
            return []
        grids = self._query_grids(audio)
        sure, ratio = self.settings.sure_votes, self.settings.changed_vote_ratio
        candidates = max(top_k, self.settings.verify_candidates)
        as_it_sounds: list[TrackMatch] = []
        if sure or ratio > 1:
            as_it_sounds = self._vote(
                *self._shortlist(*self._query_landmarks(grids, [0])), candidates
            )
            if as_it_sounds and sure and as_it_sounds[0].score >= sure:
                return self._verified(audio, as_it_sounds, top_k)
        everything = range(len(self.hypotheses))
        matches = self._vote(
            *self._shortlist(*self._query_landmarks(grids, everything)), candidates
        )
        if ratio > 1 and as_it_sounds:
            best = as_it_sounds[0]
            if not matches or (
                matches[0].track_id != best.track_id and matches[0].score < ratio * best.score
            ):
                return self._verified(audio, as_it_sounds, top_k)
        return self._verified(audio, matches, top_k)

    def _verified(
        self, audio: np.ndarray, matches: list[TrackMatch], top_k: int
    ) -> list[TrackMatch]:
        """The best ``verify_candidates`` of ``matches`` re-ranked by how alike they sound
        (acr.retrieval.fingerprint.verification), then the rest; ``top_k`` of them. Scores stay
        the votes. Ranked by votes alone where a candidate has no stored spectrogram."""
        count = min(self.settings.verify_candidates, len(matches))
        extractor = self._extractor
        if count < 2 or not extractor.verification_bands:
            return matches[:top_k]
        query = extractor.band_spectrum(extractor.spectrogram(audio))
        frames_per_second = self.settings.sample_rate / extractor.hop_size
        bins_per_band = extractor.bin_count // extractor.verification_bands
        offsets = [match.offset_s * frames_per_second for match in matches[:count]]
        reach = verification.JITTER_FRAMES + 2  # frames either side: the offsets tried, rounding
        firsts = [max(int(offset) - reach, 0) for offset in offsets]
        requests = [
            (match.track_id, first, int(offset + query.shape[1] * match.speed_factor) + reach)
            for match, first, offset in zip(matches[:count], firsts, offsets)
        ]
        references = self._spectra(requests)
        if any(reference is None for reference in references):
            return matches[:top_k]
        similarities = []
        for match, offset, first, stored in zip(matches[:count], offsets, firsts, references):
            reference = SPECTRUM_FLOOR + SPECTRUM_STEP * np.asarray(stored, np.float32).T
            shift_bins = extractor.bins_per_octave * (
                np.log2(match.speed_factor) + match.pitch_semitones / 12.0
            )
            cells = verification.aligned(
                reference, offset - first, query.shape[1], match.speed_factor,
                shift_bins / bins_per_band,
            )  # fmt: skip
            similarities.append(verification.similarity(query, cells))
        order = verification.verified_order(similarities, [m.score for m in matches[:count]])
        return ([matches[i] for i in order] + matches[count:])[:top_k]

    def _spectra(self, requests: list[tuple[str, int, int]]) -> list[np.ndarray | None]:
        """Frames [first, end) of live tracks' verification spectrograms per (track id, first,
        end), uint8 [frames, bands] (None: none stored)."""
        parts = self._all_parts()
        found = []
        for track_id, first, end in requests:
            number = self._live[track_id]
            part = next(p for p in parts if p.first_track <= number < p.first_track + len(p.live))
            found.append(part.spectrum(number - part.first_track, first, end))
        return found

    def _query_grids(self, audio: np.ndarray) -> list[tuple[int, Peaks, np.ndarray, np.ndarray]]:
        """The query's peaks and landmarks on ``query_shifts`` frame grids offset by a fraction
        of a hop (as audfprint does): (start sample, peaks, anchors, targets) per grid."""
        extractor = self._extractor
        grids = []
        for shift in range(self.settings.query_shifts):
            start = shift * extractor.hop_size // self.settings.query_shifts
            peaks = extractor.peaks(audio[start:], self.settings.query_peaks_per_second)
            grids.append((start, peaks, *extractor.landmarks(peaks, self.settings.query_fanout)))
        return grids

    def _query_landmarks(
        self, grids: list[tuple[int, Peaks, np.ndarray, np.ndarray]], numbers: Iterable[int]
    ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """The query's hashes under the hypotheses ``numbers``, on every grid, with their anchor
        frames on the reference time axis and their hypothesis numbers."""
        hashes, frames, hypothesis_numbers = [], [], []
        for start, peaks, anchors, targets in grids:
            for number in numbers:
                hypothesis = self.hypotheses[number]
                hypothesis_hashes, valid, anchor_frames = self._extractor.hash_landmarks(
                    peaks, anchors, targets, *hypothesis
                )
                start_frames = start / self._extractor.hop_size * hypothesis.time_scale
                hashes.append(hypothesis_hashes[valid])
                frames.append(anchor_frames[valid] + start_frames)
                hypothesis_numbers.append(np.full(int(valid.sum()), number, dtype=np.int64))
        return (
            np.concatenate(hashes),
            np.concatenate(frames),
            np.concatenate(hypothesis_numbers),
        )

    def query_hashes(self, audio: np.ndarray) -> np.ndarray:
        """Every hash a full search of ``audio`` looks up (what bench_scale keeps)."""
        grids = self._query_grids(np.asarray(audio, dtype=np.float32))
        return self._query_landmarks(grids, range(len(self.hypotheses)))[0]

    def _shortlist(
        self, hashes: np.ndarray, query_frames: np.ndarray, query_hypotheses: np.ndarray
    ) -> tuple[np.ndarray, np.ndarray]:
        """(group, offset) of the votes in the ``candidate_groups`` (track, hypothesis, ~1-s
        offset) cells with the most raw matches, or next to one: a linear-time count (the exact
        histogram needs a sort). A group is track * hypotheses + hypothesis. Every part votes
        into one table, and a hash is too common by its postings in all parts together, so
        the answer does not depend on how the index is cut into parts."""
        parts = self._all_parts()
        # In hash order, the lookups (galloping from the last place) and the postings they lead
        # to walk each part's arrays forward.
        order = np.argsort(hashes, kind="stable")
        hashes, query_frames, query_hypotheses = (
            hashes[order],
            query_frames[order],
            query_hypotheses[order],
        )
        ranges = [part.ranges(hashes) for part in parts]
        postings = sum(end - first for first, end in ranges)
        usable = postings <= self.settings.max_postings_per_hash
        scratch = _SCRATCH
        counts = scratch.counts
        counts[:] = 0
        groups, offsets = scratch.votes(int(postings[usable].sum()))
        votes = []
        written = 0
        for part, part_ranges in zip(parts, ranges):
            count, damaged = shortlist.count_cells(
                query_frames, query_hypotheses, usable, *part_ranges,
                *self._part_arguments(part), counts, groups[written:], offsets[written:],
            )  # fmt: skip
            if damaged:
                raise part.damaged()
            votes.append((groups[written : written + count], offsets[written : written + count]))
            written += count
        keep = scratch.keep
        shortlist.cells_to_keep(
            counts,
            shortlist.threshold(counts, self.settings.candidate_groups, self.settings.min_votes),
            keep,
        )
        collected = [
            shortlist.collect_votes(*part_votes, keep, SHORTLIST_OFFSET_FRAMES)
            for part_votes in votes
        ]
        return np.concatenate([c[0] for c in collected]), np.concatenate([c[1] for c in collected])

    def _part_arguments(self, part: Postings) -> tuple:
        return (
            part.tracks,
            part.frames,
            part.live,
            part.first_track,
            len(self.hypotheses),
            SHORTLIST_OFFSET_FRAMES,
        )

    def _vote(self, group: np.ndarray, offsets: np.ndarray, top_k: int) -> list[TrackMatch]:
        """Offset-histogram voting (Wang 2003): per (track, hypothesis), count the matches per
        (reference frame - scaled query frame) bin; a bin's score adds its two neighbours."""
        if len(group) == 0:
            return []
        offset_bins = np.floor(offsets / self.settings.offset_bin_frames + 0.5).astype(np.int64)
        lowest = int(offset_bins.min()) - 1
        width = int(offset_bins.max()) - lowest + 2  # a free bin either side: no wrap-around
        cell_of_vote = group * width + (offset_bins - lowest)
        cells, scores = _windowed_counts(cell_of_vote)
        cell_tracks = cells // (width * len(self.hypotheses))
        best = _best_per_group(cell_tracks, scores)
        best = best[np.argsort(-scores[best], kind="stable")]
        best = best[scores[best] >= self.settings.min_votes][:top_k]
        seconds_per_frame = self._extractor.hop_size / self.settings.sample_rate
        hypotheses = len(self.hypotheses)
        bins_per_semitone = self._extractor.bins_per_octave / 12.0
        matches = []
        for cell in best:
            in_window = np.abs(cell_of_vote - cells[cell]) <= 1
            # Votes pair a query frame with a reference frame, so an offset is at most the
            # track's length, and below 0 only when the query began before the track (a long
            # recording, a clip across a track change): the match then starts at 0.
            offset_frames = max(0.0, float(np.median(offsets[in_window])))
            track_id = self._track_ids[int(cell_tracks[cell])]
            shift_bins, speed_factor = self.hypotheses[int(cells[cell] // width) % hypotheses]
            semitones = shift_bins / bins_per_semitone if speed_factor == 1.0 else 0.0
            matches.append(
                TrackMatch(
                    track_id,
                    float(scores[cell]),
                    offset_frames * seconds_per_frame,
                    float(speed_factor),
                    float(round(semitones, 3)),
                )
            )
        return matches

    def save(self, directory: Path) -> None:
        """Write the live tracks as one part: settings and track ids as JSON, the postings as
        three .npy arrays. Parts are merged a block of hash values at a time, so a compaction
        of any size holds about MERGE_BLOCK_POSTINGS postings in memory."""
        directory = Path(directory)
        directory.mkdir(parents=True, exist_ok=True)
        parts = self._all_parts()
        manifest = {"engine": self.name, "settings": asdict(self.settings)}
        write_json(directory / MANIFEST_FILE, {**manifest, "track_ids": self.track_ids}, indent=1)
        # A part's track number -> the number in the merged part (-1: removed).
        renumber = np.cumsum(np.concatenate([part.live for part in parts] or [[]])) - 1
        renumbered = [
            np.where(part.live, renumber[part.first_track : part.first_track + len(part.live)], -1)
            for part in parts
        ]
        total = sum(_live_postings(part) for part in parts)
        out = {
            name: np.lib.format.open_memmap(directory / f"{name}.npy", "w+", dtype, (total,))
            for name, dtype in (("tracks", np.int32), ("frames", np.int32))
        }
        hash_count = 2**self._extractor.hash_bits
        stored = sum(len(part.tracks) for part in parts)
        blocks = max(1, min(hash_count, -(-stored // MERGE_BLOCK_POSTINGS)))
        bounds = np.linspace(0, hash_count, blocks + 1).astype(np.int64)
        distinct, counts = [], []
        written = 0
        for first, end in zip(bounds[:-1], bounds[1:]):
            keys, tracks, frames = [], [], []
            for part, numbers in zip(parts, renumbered):
                i, j = np.searchsorted(part.keys, [first, end])
                low, high = int(part.starts[i]), int(part.starts[j])
                repeats = np.diff(part.starts[i : j + 1])
                if np.any(np.diff(part.keys[i:j].astype(np.int64)) <= 0):
                    raise part.damaged("keys.npy", "hashes not increasing")
                if np.any(repeats < 0):
                    raise part.damaged("starts.npy", "not a row index of tracks.npy")
                part_tracks = np.asarray(part.tracks[low:high])
                if len(part_tracks) and (
                    part_tracks.min() < 0 or part_tracks.max() >= len(numbers)
                ):
                    raise part.damaged()
                new_numbers = numbers[part_tracks]
                kept = new_numbers >= 0
                keys.append(np.repeat(part.keys[i:j], repeats)[kept])
                tracks.append(new_numbers[kept].astype(np.int32))
                frames.append(np.asarray(part.frames[low:high])[kept])
            block_keys = np.concatenate(keys or [np.zeros(0, np.uint32)])
            order = np.argsort(block_keys, kind="stable")  # ties: part order, then track order
            count = len(order)
            out["tracks"][written : written + count] = np.concatenate(tracks or [[]])[order]
            out["frames"][written : written + count] = np.concatenate(frames or [[]])[order]
            block_distinct, block_counts = np.unique(block_keys, return_counts=True)
            distinct.append(block_distinct.astype(np.uint32))
            counts.append(block_counts)
            written += count
        for array in out.values():
            array.flush()
        del out
        np.save(directory / "keys.npy", np.concatenate(distinct or [np.zeros(0, np.uint32)]))
        starts = np.r_[0, np.cumsum(np.concatenate(counts or [[]]))].astype(np.int64)
        np.save(directory / "starts.npy", starts)
        if self.settings.verification_bands:
            _save_spectra(directory, parts, self.settings.verification_bands)

    @classmethod
    def open(
        cls, directories: Sequence[Path], removed: Sequence[Collection[str]] = ()
    ) -> FingerprintEngine:
        """The parts written by :meth:`save`, searched as one index, without the ``removed``
        tracks of each. Numeric arrays only, no pickle.

        The posting arrays are memory-mapped, not read: their pages live in the page cache,
        shared by every process that searches the same index, and a process holds only the
        pages its queries touch. Checks at load are the ones that cost no pass over the
        arrays (shapes, types, the row index's ends); a track number out of range or a row
        index out of order is caught when a search or a merge meets it, naming the file."""
        if not directories:
            raise ValueError("no fingerprint index parts to open")
        engine: FingerprintEngine | None = None
        for number, directory in enumerate(directories):
            directory = Path(directory)
            manifest_path = directory / MANIFEST_FILE
            manifest = read_index_json(manifest_path, ("engine", "settings", "track_ids"))
            check_index(
                manifest["engine"] == cls.name,
                manifest_path,
                f"written by engine {manifest['engine']!r}",
            )
            track_ids = check_track_ids(manifest["track_ids"], manifest_path)
            settings = read_settings(FingerprintSettings, manifest["settings"], manifest_path)
            if engine is None:
                engine = cls(settings)
            check_index(
                settings == engine.settings,
                manifest_path,
                f"settings differ from those of {directories[0]}",
            )
            gone = set(removed[number]) if number < len(removed) else set()
            unknown = sorted(gone - set(track_ids))
            check_index(
                not unknown, manifest_path, f"removed track {unknown[:1]} is not in this part"
            )
            live = np.array([track_id not in gone for track_id in track_ids], dtype=bool)
            part = _read_part(
                directory, engine._extractor.hash_bits, live, settings.verification_bands
            )
            part.first_track = len(engine._track_ids)
            for track_id, is_live in zip(track_ids, live):
                if is_live:
                    check_index(
                        track_id not in engine._live,
                        manifest_path,
                        f"track {track_id!r} is also in another part",
                    )
                    engine._live[track_id] = len(engine._track_ids)
                engine._track_ids.append(track_id)
            engine._parts.append(part)
        return engine


def _save_spectra(directory: Path, parts: list[Postings], bands: int) -> None:
    """The live tracks' verification spectrograms, in the merged part's track order, copied a
    track at a time into spectra.npy, and where each starts in spectrum_starts.npy."""
    lengths = []
    for part in parts:
        if part.spectra is None or part.spectrum_starts is None:
            raise part.damaged("spectra.npy", "missing, though verification_bands is set")
        lengths.append(np.diff(np.asarray(part.spectrum_starts))[part.live])
    lengths = np.concatenate(lengths or [np.zeros(0, np.int64)])
    starts = np.r_[0, np.cumsum(lengths)].astype(np.int64)
    out = np.lib.format.open_memmap(
        directory / "spectra.npy", "w+", np.uint8, (int(starts[-1]), bands)
    )
    row = 0
    for part in parts:
        for track in np.flatnonzero(part.live):
            first, end = int(part.spectrum_starts[track]), int(part.spectrum_starts[track + 1])
            out[row : row + end - first] = part.spectra[first:end]
            row += end - first
    out.flush()
    del out
    np.save(directory / "spectrum_starts.npy", starts)


def _read_spectra(directory: Path, tracks: int, bands: int) -> tuple[np.ndarray, np.ndarray]:
    """A part's verification spectrograms, memory-mapped, and where each track's start."""
    arrays = {}
    for name, dtype in SPECTRA.items():
        path = directory / f"{name}.npy"
        check_index(path.is_file(), path, "missing, though the settings give verification_bands")
        with reading(path):
            arrays[name] = np.load(path, mmap_mode="r", allow_pickle=False)
        ndim = 2 if name == "spectra" else 1
        check_index(
            arrays[name].dtype == dtype
            and arrays[name].ndim == ndim
            and (ndim == 1 or arrays[name].shape[1] == bands),
            path,
            f"expected a {ndim}-D {np.dtype(dtype)} array"
            + (f" of {bands} bands (verification_bands)" if ndim == 2 else "")
            + f", found {arrays[name].dtype} of shape {arrays[name].shape}",
        )
    spectra, starts = arrays["spectra"], np.asarray(arrays["spectrum_starts"])
    check_index(
        len(starts) == tracks + 1,
        directory / "spectrum_starts.npy",
        f"{len(starts)} entries for the {tracks} tracks of {MANIFEST_FILE} (expected one more)",
    )
    check_index(
        starts[0] == 0 and np.all(np.diff(starts) >= 0),
        directory / "spectrum_starts.npy",
        "not where each track's frames of spectra.npy start",
    )
    check_index(
        starts[-1] == len(spectra),
        directory / "spectra.npy",
        f"{len(spectra)} frames where spectrum_starts.npy gives {starts[-1]}",
    )
    return spectra, starts


def _read_part(directory: Path, hash_bits: int, live: np.ndarray, bands: int = 0) -> Postings:
    """One part's arrays, memory-mapped and checked against each other: the row index whole
    (distinct hashes: at most 2^hash_bits), the postings by their lengths, and with ``bands``
    the verification spectrograms. A part written before acr 0.3 has a hash per posting in
    keys.npy and no starts.npy: its row index is computed."""
    part = _read_postings(directory, hash_bits, live)
    if bands:
        part.spectra, part.spectrum_starts = _read_spectra(directory, len(live), bands)
    return part


def _read_postings(directory: Path, hash_bits: int, live: np.ndarray) -> Postings:
    """:func:`_read_part`'s posting arrays."""
    arrays = {}
    legacy = not (directory / "starts.npy").is_file()  # or deleted: told apart below
    for name, dtype in ARRAYS.items():
        if name == "starts" and legacy:
            continue
        path = directory / f"{name}.npy"
        with reading(path):
            arrays[name] = np.load(path, mmap_mode="r", allow_pickle=False)
        check_index(
            arrays[name].dtype == dtype and arrays[name].ndim == 1,
            path,
            f"expected a 1-D {np.dtype(dtype)} array, found {arrays[name].dtype}"
            f" of shape {arrays[name].shape}",
        )
    keys, tracks, frames = arrays["keys"], arrays["tracks"], arrays["frames"]
    check_index(
        len(tracks) == len(frames),
        directory / "tracks.npy",
        f"{len(tracks)} entries for {len(frames)} in frames.npy",
    )
    if legacy:
        check_index(len(keys) == len(tracks), directory / "starts.npy", "missing")
        check_index(
            len(keys) == 0 or (keys.max() < 2**hash_bits and np.all(keys[1:] >= keys[:-1])),
            directory / "keys.npy",
            f"hashes not sorted or wider than {hash_bits} bits",
        )
        distinct, first = np.unique(np.asarray(keys), return_index=True)
        return Postings(
            distinct, np.r_[first, len(keys)].astype(np.int64), tracks, frames, live, 0, directory
        )
    # The ends only: with 32-bit hashes a large part has hundreds of millions of distinct
    # ones, and a pass over them would read gigabytes at load. What a search or a merge reads
    # of the row index is checked then (Postings.ranges, FingerprintEngine.save).
    starts = arrays["starts"]
    check_index(
        len(keys) == 0 or int(keys[0]) <= int(keys[-1]) < 2**hash_bits,
        directory / "keys.npy",
        f"hashes not increasing or wider than {hash_bits} bits",
    )
    check_index(
        len(starts) == len(keys) + 1 and starts[0] == 0 and starts[-1] == len(tracks),
        directory / "starts.npy",
        f"not a row index of {len(tracks)} postings for the {len(keys)} hashes of keys.npy",
    )
    return Postings(keys, starts, tracks, frames, live, 0, directory)


def _live_postings(part: Postings) -> int:
    """Postings of the part's live tracks (a pass over its track numbers, a block at a time)."""
    if part.live.all():
        return len(part.tracks)
    total = 0
    for first in range(0, len(part.tracks), MERGE_BLOCK_POSTINGS):
        block = np.asarray(part.tracks[first : first + MERGE_BLOCK_POSTINGS])
        if len(block) and (block.min() < 0 or block.max() >= len(part.live)):
            raise part.damaged()
        total += int(np.count_nonzero(part.live[block]))
    return total


def _windowed_counts(values: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Distinct values, sorted, and how many of ``values`` lie within ±1 of each."""
    values = np.sort(values)
    starts = np.flatnonzero(np.r_[True, values[1:] != values[:-1]])
    distinct = values[starts]
    counts = np.diff(np.r_[starts, len(values)])
    windowed = counts.copy()
    adjacent = distinct[1:] == distinct[:-1] + 1
    windowed[1:] += np.where(adjacent, counts[:-1], 0)
    windowed[:-1] += np.where(adjacent, counts[1:], 0)
    return distinct, windowed


def _best_per_group(groups: np.ndarray, scores: np.ndarray) -> np.ndarray:
    """Index of the first highest score within each run of equal, sorted ``groups``."""
    starts = np.flatnonzero(np.r_[True, groups[1:] != groups[:-1]])
    group_max = np.maximum.reduceat(scores, starts)
    run_of = np.repeat(np.arange(len(starts)), np.diff(np.r_[starts, len(groups)]))
    is_max = np.flatnonzero(scores == group_max[run_of])
    return is_max[np.r_[True, run_of[is_max[1:]] != run_of[is_max[:-1]]]]
