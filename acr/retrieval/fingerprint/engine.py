"""The landmark engine: sorted posting arrays, matched by offset voting under speed and pitch
hypotheses.

The index is three flat arrays sorted by hash (hash, track, frame) plus a CSR row index over all
2^21 hash values (default settings). A query looks its hashes up and votes, per track, for the
offset (reference frame - query frame); the track whose best offset bin (with its two
neighbours) collects most votes wins, and that offset says where the query starts (Wang 2003).

Speed and pitch changes. Fixed-grid pair hashes fail once a query is played a few percent
faster or slower or transposed: every peak frequency is scaled, and on a linear STFT axis so is
every frequency difference. On the log-frequency peak map (acr.retrieval.fingerprint.landmarks)
a transposition moves every peak by the same number of bins. Indexing hashes one grid; search
re-hashes the query's pairs under a few hypotheses, each voting in its own histogram: no change,
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
answers.) More hypotheses cost only query time (the index is unchanged) and a little noise
robustness (more random matches to outvote). Panako-style invariant triplets (Six & Leman 2014)
were not built: each hash needs three surviving peaks instead of two, which costs noise
robustness, and the pair hypotheses already met the speed and pitch targets.
"""

from __future__ import annotations

import functools
from dataclasses import asdict, dataclass, fields
from pathlib import Path
from typing import ClassVar, NamedTuple

import numpy as np

from acr.files import write_json
from acr.retrieval.engine import (
    Engine,
    TrackMatch,
    check_index,
    check_track_ids,
    read_index_json,
    read_settings,
    reading,
)
from acr.retrieval.fingerprint import shortlist
from acr.retrieval.fingerprint.landmarks import LandmarkExtractor, Landmarks

SHORTLIST_OFFSET_FRAMES = 32  # ~1 s at 8 kHz and a 256-sample hop
SHORTLIST_TABLE = 1 << 20  # hashed (track, hypothesis, offset) cells counted per query
MANIFEST_FILE = "fingerprint.json"


@dataclass(frozen=True)
class FingerprintSettings(LandmarkExtractor):
    """Settings of the landmark engine, recorded in the index: the landmark extractor's (the
    first twelve) and the search's.

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
        peaks_per_second: strongest peaks kept per second of catalog audio (index density).
        fanout: targets paired with each anchor peak of a catalog track.
        max_pair_frames: the target zone's length in frames (also a hash field's range).
        max_pair_bins: the target zone's height in bins either way (also a hash field's range).
        query_peaks_per_second: strongest peaks kept per second of a query.
        query_fanout: targets paired with each anchor peak of a query.
        query_shifts: frame grids per query, offset by fractions of a hop.
        min_query_s: shorter queries, in seconds, return no match (too few peaks to mean
            anything).
        max_pitch_shift_semitones: largest pure pitch-shift hypothesis, in semitones.
        pitch_step_semitones: step between pitch-shift hypotheses, in semitones.
        speed_factors: turntable speed hypotheses (pitch and tempo together), as playback-rate
            factors.
        offset_bin_frames: width of an offset histogram bin, in frames.
        max_postings_per_hash: hashes more common than this in the index are skipped (they
            vote everywhere and cost most of the search time).
        min_votes: tracks whose best offset bin has fewer votes are not returned.
        candidate_groups: (track, hypothesis) pairs with the most raw hash matches that get
            an offset histogram; the rest are dropped unsorted, which keeps search time nearly
            flat in catalog size (audfprint shortlists tracks by raw hash count the same way).
    """

    query_peaks_per_second: float = 30.0
    query_fanout: int = 5
    query_shifts: int = 2
    min_query_s: float = 0.5
    max_pitch_shift_semitones: float = 2.0
    pitch_step_semitones: float = 1.0 / 3.0
    speed_factors: tuple[float, ...] = (0.94, 0.97, 1.03, 1.06)
    offset_bin_frames: int = 1
    max_postings_per_hash: int = 1000
    min_votes: int = 2
    candidate_groups: int = 64

    def __post_init__(self) -> None:
        """Settings that cannot work fail here, when a command line or an index is read."""
        super().__post_init__()  # the hash width and the top filter
        object.__setattr__(self, "speed_factors", tuple(float(f) for f in self.speed_factors))
        if self.pitch_step_semitones <= 0:
            raise ValueError(f"pitch_step_semitones must be > 0, got {self.pitch_step_semitones}")

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


class FingerprintEngine(Engine):
    """Landmark engine (see the module docstring); ``settings`` are its FingerprintSettings."""

    name: ClassVar[str] = "fingerprint"

    def __init__(self, settings: FingerprintSettings | None = None) -> None:
        self.settings = settings or FingerprintSettings()
        self._extractor = self.settings.extractor()
        self._track_ids: list[str] = []
        self._track_ids_set: set[str] = set()
        # Sorted postings plus per-track chunks not yet merged in: merging once per search or
        # save after many adds avoids the quadratic cost of concatenating on every add.
        self._keys = np.zeros(0, dtype=np.uint32)
        self._tracks = np.zeros(0, dtype=np.int32)
        self._frames = np.zeros(0, dtype=np.int32)
        self._pending: list[tuple[np.ndarray, np.ndarray, np.ndarray]] = []
        self._pending_count = 0
        self._first_posting: np.ndarray | None = None

    def extractor(self) -> LandmarkExtractor:
        return self._extractor

    @property
    def track_ids(self) -> list[str]:
        return list(self._track_ids)

    @property
    def item_count(self) -> int:
        return len(self._keys) + self._pending_count

    def add(self, track_id: str, features: Landmarks) -> int:
        if track_id in self._track_ids_set:
            raise ValueError(f"track {track_id!r} is already in the index")
        hashes = np.asarray(features.hashes, dtype=np.uint32)
        frames = np.asarray(features.frames, dtype=np.int32)
        if hashes.shape != frames.shape or hashes.ndim != 1:
            raise ValueError(f"track {track_id!r}: hashes and frames must be equal-length 1-D")
        position = len(self._track_ids)
        self._track_ids.append(track_id)
        self._track_ids_set.add(track_id)
        self._pending.append((hashes, np.full(len(hashes), position, np.int32), frames))
        self._pending_count += len(hashes)
        return len(hashes)

    def _merge_pending(self) -> None:
        """Sort the added tracks' postings into the index (stable: ties stay in track order)."""
        if not self._pending:
            return
        keys, tracks, frames = zip(*self._pending)
        keys = np.concatenate([self._keys, *keys])
        order = np.argsort(keys, kind="stable")
        self._keys = keys[order]
        self._tracks = np.concatenate([self._tracks, *tracks])[order]
        self._frames = np.concatenate([self._frames, *frames])[order]
        self._pending, self._pending_count = [], 0
        self._first_posting = None

    @property
    def _posting_starts(self) -> np.ndarray:
        """Where each hash value's postings start in the sorted arrays (a CSR row index), so a
        lookup is two array reads instead of a binary search through millions of keys."""
        self._merge_pending()
        if self._first_posting is None:
            counts = np.bincount(self._keys, minlength=2**self._extractor.hash_bits)
            self._first_posting = np.r_[0, np.cumsum(counts)].astype(np.int64)
        return self._first_posting

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

    def search(self, audio: np.ndarray, top_k: int = 5) -> list[TrackMatch]:
        audio = np.asarray(audio, dtype=np.float32)
        if (
            len(audio) < self.settings.min_query_s * self.settings.sample_rate
            or self.item_count == 0
        ):
            return []
        return self._vote(*self._shortlist(*self._query_landmarks(audio)), top_k)

    def _query_landmarks(self, audio: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """The query's hashes under every hypothesis, from ``query_shifts`` frame grids offset
        by a fraction of a hop (as audfprint does), with their anchor frames on the reference
        time axis and their hypothesis numbers."""
        extractor = self._extractor
        hashes, frames, hypothesis_numbers = [], [], []
        for shift in range(self.settings.query_shifts):
            start = shift * extractor.hop_size // self.settings.query_shifts
            peaks = extractor.peaks(audio[start:], self.settings.query_peaks_per_second)
            anchors, targets = extractor.pairs(peaks, self.settings.query_fanout)
            for number, hypothesis in enumerate(self.hypotheses):
                hypothesis_hashes, valid, anchor_frames = extractor.hash_pairs(
                    peaks, anchors, targets, *hypothesis
                )
                start_frames = start / extractor.hop_size * hypothesis.time_scale
                hashes.append(hypothesis_hashes[valid])
                frames.append(anchor_frames[valid] + start_frames)
                hypothesis_numbers.append(np.full(int(valid.sum()), number, dtype=np.int64))
        return (
            np.concatenate(hashes),
            np.concatenate(frames),
            np.concatenate(hypothesis_numbers),
        )

    def _shortlist(
        self, hashes: np.ndarray, query_frames: np.ndarray, query_hypotheses: np.ndarray
    ) -> tuple[np.ndarray, np.ndarray]:
        """(group, offset) of the votes in the ``candidate_groups`` (track, hypothesis, ~1-s
        offset) cells with the most raw matches, or next to one: a linear-time count (the exact
        histogram needs a sort). A group is track * hypotheses + hypothesis."""
        arguments = (
            hashes,
            query_frames,
            query_hypotheses,
            self._posting_starts,
            self._tracks,
            self._frames,
            self.settings.max_postings_per_hash,
            len(self.hypotheses),
            SHORTLIST_OFFSET_FRAMES,
        )
        counts, votes = shortlist.count_cells(*arguments, SHORTLIST_TABLE)
        occupied = counts[counts > 0]
        threshold = 0
        if len(occupied) > self.settings.candidate_groups:
            best = np.partition(occupied, -self.settings.candidate_groups)[
                -self.settings.candidate_groups
            ]
            threshold = max(int(best), self.settings.min_votes)
        return shortlist.collect_votes(*arguments, counts, threshold, votes)

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
        matches = []
        for cell in best:
            in_window = np.abs(cell_of_vote - cells[cell]) <= 1
            # Votes pair a query frame with a reference frame, so an offset is at most the
            # track's length, and below 0 only when the query began before the track (a long
            # recording, a clip across a track change): the match then starts at 0.
            offset_frames = max(0.0, float(np.median(offsets[in_window])))
            track_id = self._track_ids[int(cell_tracks[cell])]
            matches.append(
                TrackMatch(track_id, float(scores[cell]), offset_frames * seconds_per_frame)
            )
        return matches

    def save(self, directory: Path) -> None:
        """Write settings and track ids as JSON and the postings as three .npy arrays."""
        directory = Path(directory)
        directory.mkdir(parents=True, exist_ok=True)
        self._merge_pending()
        manifest = {"engine": self.name, "settings": asdict(self.settings)}
        write_json(directory / MANIFEST_FILE, {**manifest, "track_ids": self._track_ids}, indent=1)
        np.save(directory / "keys.npy", self._keys)
        np.save(directory / "tracks.npy", self._tracks)
        np.save(directory / "frames.npy", self._frames)

    @classmethod
    def load(cls, directory: Path) -> FingerprintEngine:
        """Read an engine written by :meth:`save`; numeric arrays only, no pickle. The arrays
        are checked against each other and the track ids (a few vectorised passes), so that a
        damaged index fails here, naming the file, rather than mid-search.

        The posting arrays are memory-mapped, not read: their pages live in the page cache,
        shared by every process that searches the same index, instead of a copy in each."""
        directory = Path(directory)
        manifest_path = directory / MANIFEST_FILE
        manifest = read_index_json(manifest_path, ("engine", "settings", "track_ids"))
        check_index(
            manifest["engine"] == cls.name,
            manifest_path,
            f"written by engine {manifest['engine']!r}",
        )
        track_ids = check_track_ids(manifest["track_ids"], manifest_path)
        engine = cls(read_settings(FingerprintSettings, manifest["settings"], manifest_path))
        engine._track_ids = list(track_ids)
        engine._track_ids_set = set(track_ids)
        arrays = {}
        for name, dtype in (("keys", np.uint32), ("tracks", np.int32), ("frames", np.int32)):
            path = directory / f"{name}.npy"
            with reading(path):
                arrays[name] = np.load(path, mmap_mode="r", allow_pickle=False)
            check_index(
                arrays[name].dtype == dtype and arrays[name].ndim == 1,
                path,
                f"expected a 1-D {np.dtype(dtype)} array, found {arrays[name].dtype}"
                f" of shape {arrays[name].shape}",
            )
        keys, tracks = arrays["keys"], arrays["tracks"]
        for name in ("tracks", "frames"):
            check_index(
                len(arrays[name]) == len(keys),
                directory / f"{name}.npy",
                f"{len(arrays[name])} entries for {len(keys)} hashes in keys.npy",
            )
        check_index(
            len(tracks) == 0 or (tracks.min() >= 0 and tracks.max() < len(track_ids)),
            directory / "tracks.npy",
            f"track numbers outside the {len(track_ids)} tracks of {MANIFEST_FILE}",
        )
        check_index(
            len(keys) == 0
            or (keys.max() < 2**engine._extractor.hash_bits and np.all(keys[1:] >= keys[:-1])),
            directory / "keys.npy",
            f"hashes not sorted or wider than {engine._extractor.hash_bits} bits",
        )
        engine._keys, engine._tracks, engine._frames = keys, tracks, arrays["frames"]
        return engine


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
