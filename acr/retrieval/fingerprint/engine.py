"""Landmark fingerprints: peak pairs on a log-frequency peak map, matched by offset voting.

A track's fingerprint is one 32-bit hash per pair of nearby spectral peaks, (anchor frequency,
frequency difference, time difference), stored with the anchor's time (Wang 2003, the Shazam
scheme; audfprint). The index is three flat arrays sorted by hash (hash, track, frame) plus a
CSR row index over all 2^21 hash values (default settings). A query looks its hashes up and
votes, per track, for the offset (reference frame - query frame); the track whose best offset
bin (with its two neighbours) collects most votes wins, and that offset says where the query
starts.

Speed and pitch changes. Fixed-grid pair hashes fail once a query is played a few percent
faster or slower or transposed: every peak frequency is scaled, and on a linear STFT axis so is
every frequency difference. Here the peak map is on a log-frequency axis (36 bins per octave,
120-3840 Hz, peaks refined between bins), where a transposition, and the pitch half of a
turntable speed change, moves every peak by the same number of bins. Indexing hashes one grid;
search re-hashes the query's pairs under a few hypotheses, each voting in its own histogram:
no change, pitch shifts of +-1/3 to +-2 semitones in 1-bin steps, and speed factors 0.94, 0.97,
1.03 and 1.06 (frequency shift plus time scale; the votes use the scaled query time). Each
query is also analysed on two frame grids half a hop apart, as audfprint does (measured: pitch
97 -> 99 %, clean offsets within 0.1 s 94 -> 99 %, for twice the query time).

Measured with experiments/bench_fingerprint.py (150 game-soundtrack tracks, 5.9 h, ~300 3-s
queries per degradation, 2 shared cores), top-1 for clean / noise 0-10 dB / reverb / speed
+-3-6 % / pitch +-1-2 semitones, and query latency p50:
    1 hypothesis (a fixed grid):       100 / 99.0 / 100 /   7.0 /  3.4 %,  7 ms
    + 4 speed hypotheses (5):          100 / 99.0 / 100 /  98.7 / 21.9 %, 14 ms
    + 12 pitch hypotheses (17, used):  100 / 98.7 / 100 / 100.0 / 98.3 %, 23 ms
(Latencies before the first pass was compiled (acr.retrieval.fingerprint.shortlist), which halved them:
3-s queries on the 393-track, 16-h corpus went from 59 to 27 ms p50 with identical answers.)
More hypotheses cost only query time (the index is unchanged) and a little noise robustness
(more random matches to outvote). Panako-style invariant triplets (Six & Leman 2014) were not
built: each hash needs three surviving peaks instead of two, which costs noise robustness, and
the pair hypotheses already met the speed and pitch targets.
"""

from __future__ import annotations

import functools
import json
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, ClassVar, NamedTuple

import numpy as np
import scipy.ndimage
import scipy.sparse

from acr.retrieval.fingerprint import shortlist
from acr.retrieval.engine import Engine
from acr.retrieval.windows import TrackMatch

# Filtered magnitudes below this (a tone at about -110 dBFS) are silence: no peaks there.
MAGNITUDE_FLOOR = 1e-3
SHORTLIST_OFFSET_FRAMES = 32  # ~1 s at 8 kHz and a 256-sample hop
SHORTLIST_TABLE = 1 << 20  # hashed (track, hypothesis, offset) cells counted per query


class Peaks(NamedTuple):
    """Spectral peaks of one clip, sorted by time then frequency."""

    frames: np.ndarray  # int32 STFT frame
    bins: np.ndarray  # float32 log-frequency position, refined between bins


class Landmarks(NamedTuple):
    """A track's features: one 32-bit hash per peak pair and the frame of its anchor peak."""

    hashes: np.ndarray  # uint32
    frames: np.ndarray  # int32


@functools.lru_cache(maxsize=8)
def log_filterbank(
    sample_rate: int, fft_size: int, min_frequency_hz: float, bin_count: int, bins_per_octave: int
) -> scipy.sparse.csr_array:
    """Triangular filters centred on log-spaced frequencies, [bin_count, fft_size // 2 + 1].

    Hand-written (a log-frequency filterbank as in madmom, which acr does not depend on): each
    filter spans its neighbours' centres but at least one STFT bin either side, so low filters
    interpolate between STFT bins and high ones sum several. Sparse (about 1000 non-zeros): the
    dense product was 13x slower on one thread, and 400x when OpenBLAS threads contended.
    """
    bin_hz = sample_rate / fft_size
    positions = np.arange(-1, bin_count + 1)
    centers_hz = min_frequency_hz * 2.0 ** (positions / bins_per_octave)
    centers = centers_hz / bin_hz
    stft_bins = np.arange(fft_size // 2 + 1)[None, :]
    center = centers[1:-1, None]
    lower = np.minimum(centers[:-2, None], center - 1.0)
    upper = np.maximum(centers[2:, None], center + 1.0)
    rising = (stft_bins - lower) / (center - lower)
    falling = (upper - stft_bins) / (upper - center)
    weights = np.clip(np.minimum(rising, falling), 0.0, None).astype(np.float32)
    return scipy.sparse.csr_array(weights)


@dataclass(frozen=True)
class LandmarkExtractor:
    """Audio -> peak-pair hashes (Wang 2003) on a log-frequency axis, so a pitch shift or a
    speed change moves peaks by a constant number of bins instead of scaling their spacing.

    Picklable and stateless: it runs in indexing worker processes.
    """

    sample_rate: int = 8000
    fft_size: int = 1024
    hop_size: int = 256
    min_frequency_hz: float = 120.0
    bin_count: int = 180
    bins_per_octave: int = 36
    peak_radius_bins: int = 6
    peak_radius_frames: int = 4
    peaks_per_second: float = 30.0
    fanout: int = 5
    max_pair_frames: int = 63
    max_pair_bins: int = 63

    def __post_init__(self) -> None:
        """Reject settings whose hash fields would not fit in 32 bits."""
        if self.hash_bits > 32:
            raise ValueError(f"hash fields need {self.hash_bits} bits; at most 32 fit")
        top_hz = self.min_frequency_hz * 2.0 ** (self.bin_count / self.bins_per_octave)
        if top_hz >= self.sample_rate / 2:
            raise ValueError(f"the top filter ({top_hz:.0f} Hz) must lie below Nyquist")

    @property
    def _field_bits(self) -> tuple[int, int, int]:
        """Bits of the anchor bin, the signed bin difference and the frame difference."""
        return (
            int(self.bin_count - 1).bit_length(),
            int(2 * self.max_pair_bins).bit_length(),
            int(self.max_pair_frames).bit_length(),
        )

    @property
    def hash_bits(self) -> int:
        """Hash width: anchor bin, then bin difference + max_pair_bins, then frame difference."""
        return sum(self._field_bits)

    def __call__(self, audio: np.ndarray) -> Landmarks:
        """The landmarks of one catalog track (mono float32 at ``sample_rate``)."""
        peaks = self.peaks(audio, self.peaks_per_second)
        anchors, targets = self.pairs(peaks, self.fanout)
        hashes, valid, frames = self.hash_pairs(peaks, anchors, targets, 0.0, 1.0)
        return Landmarks(hashes[valid], frames[valid].astype(np.int32))

    def spectrogram(self, audio: np.ndarray) -> np.ndarray:
        """Log-magnitude log-frequency spectrogram, [bin_count, frames]; no frames when the
        clip is shorter than one FFT window."""
        audio = np.asarray(audio, dtype=np.float32)
        if audio.ndim != 1:
            raise ValueError(f"expected mono audio with shape (samples,), got {audio.shape}")
        if len(audio) < self.fft_size:
            return np.zeros((self.bin_count, 0), dtype=np.float32)
        frames = np.lib.stride_tricks.sliding_window_view(audio, self.fft_size)[:: self.hop_size]
        window = np.hanning(self.fft_size).astype(np.float32)
        magnitude = np.abs(np.fft.rfft(frames * window, axis=1)).astype(np.float32)
        filterbank = log_filterbank(
            self.sample_rate,
            self.fft_size,
            self.min_frequency_hz,
            self.bin_count,
            self.bins_per_octave,
        )
        return np.log(np.maximum(filterbank @ magnitude.T, MAGNITUDE_FLOOR))

    def peaks(self, audio: np.ndarray, peaks_per_second: float) -> Peaks:
        """Local maxima of the spectrogram, the strongest ``peaks_per_second`` in each second."""
        spectrum = self.spectrogram(audio)
        size = (2 * self.peak_radius_bins + 1, 2 * self.peak_radius_frames + 1)
        neighbourhood_max = scipy.ndimage.maximum_filter(spectrum, size, mode="nearest")
        is_peak = (spectrum == neighbourhood_max) & (spectrum > np.log(MAGNITUDE_FLOOR))
        bins, frames = np.nonzero(is_peak)
        strength = spectrum[bins, frames]
        frames_per_second = self.sample_rate / self.hop_size
        second = (frames / frames_per_second).astype(np.int64)
        order = np.lexsort((-strength, second))
        first_of_second = np.searchsorted(second[order], second[order])
        rank = np.arange(len(order)) - first_of_second
        keep = order[rank < peaks_per_second]
        keep = keep[np.lexsort((bins[keep], frames[keep]))]
        return Peaks(
            frames[keep].astype(np.int32), self._refine(spectrum, bins[keep], frames[keep])
        )

    @staticmethod
    def _refine(spectrum: np.ndarray, bins: np.ndarray, frames: np.ndarray) -> np.ndarray:
        """Sub-bin peak position from a parabola through the peak and its two neighbours."""
        below = spectrum[np.maximum(bins - 1, 0), frames]
        above = spectrum[np.minimum(bins + 1, len(spectrum) - 1), frames]
        centre = spectrum[bins, frames]
        curvature = below - 2 * centre + above
        safe = np.where(curvature < 0, curvature, -1.0)
        shift = np.where(curvature < 0, 0.5 * (below - above) / safe, 0.0)
        return (bins + np.clip(shift, -0.5, 0.5)).astype(np.float32)

    def pairs(self, peaks: Peaks, fanout: int) -> tuple[np.ndarray, np.ndarray]:
        """Anchor and target peak indices: each anchor pairs with its next ``fanout`` peaks
        within ``max_pair_frames`` and ``max_pair_bins`` (the target zone, Wang 2003)."""
        count = len(peaks.frames)
        if count < 2:
            return np.zeros(0, dtype=np.int64), np.zeros(0, dtype=np.int64)
        lookahead = np.arange(1, 4 * fanout + 1)
        anchors = np.arange(count)[:, None]
        targets = anchors + lookahead[None, :]
        inside = targets < count
        targets = np.minimum(targets, count - 1)
        frame_gap = peaks.frames[targets] - peaks.frames[anchors]
        bin_gap = np.abs(peaks.bins[targets] - peaks.bins[anchors])
        inside &= (frame_gap > 0) & (frame_gap <= self.max_pair_frames)
        inside &= bin_gap <= self.max_pair_bins - 1
        inside &= np.cumsum(inside, axis=1) <= fanout
        return np.broadcast_to(anchors, targets.shape)[inside], targets[inside]

    def hash_pairs(
        self,
        peaks: Peaks,
        anchors: np.ndarray,
        targets: np.ndarray,
        shift_bins: float,
        time_scale: float,
    ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Hashes of pairs as they would sound ``shift_bins`` lower and ``time_scale`` slower.

        Returns (hashes, valid, anchor frames on the scaled time axis).
        """
        anchor_bin = np.rint(peaks.bins[anchors] - shift_bins).astype(np.int64)
        target_bin = np.rint(peaks.bins[targets] - shift_bins).astype(np.int64)
        bin_gap = target_bin - anchor_bin
        frame_gap = peaks.frames[targets] - peaks.frames[anchors]
        frame_gap = np.rint(frame_gap * time_scale).astype(np.int64)
        valid = (anchor_bin >= 0) & (anchor_bin < self.bin_count)
        valid &= (np.abs(bin_gap) <= self.max_pair_bins) & (frame_gap <= self.max_pair_frames)
        _, gap_bits, frame_bits = self._field_bits
        hashes = (anchor_bin << (gap_bits + frame_bits)) | (
            (bin_gap + self.max_pair_bins) << frame_bits
        )
        hashes |= frame_gap
        frames = peaks.frames[anchors] * time_scale
        # Invalid rows may hold negative fields; masking keeps the cast well defined.
        return (hashes & 0xFFFFFFFF).astype(np.uint32), valid, frames


class Hypothesis(NamedTuple):
    """How the query may differ from the reference: it sounds ``shift_bins`` log-frequency bins
    higher, and ``time_scale`` reference frames pass per query frame."""

    shift_bins: float
    time_scale: float


class FingerprintEngine(Engine):
    """Landmark engine: sorted posting arrays, searched under several speed/pitch hypotheses.

    Args:
        sample_rate: audio rate the extractor and ``search`` expect (8 kHz keeps the band
            where music has most peaks and halves the work of 16 kHz).
        fft_size, hop_size: STFT window and hop in samples (128 ms and 32 ms at 8 kHz; the long
            window separates semitones down to about 130 Hz).
        min_frequency_hz, bin_count, bins_per_octave: the log-frequency axis.
        peak_radius_bins, peak_radius_frames: a peak is the maximum of this neighbourhood.
        peaks_per_second: strongest peaks kept per second of catalog audio (index density).
        fanout: targets paired with each anchor peak.
        max_pair_frames, max_pair_bins: the target zone, also the hash field ranges.
        query_peaks_per_second, query_fanout: the same for queries.
        query_shifts: frame grids per query, offset by fractions of a hop.
        min_query_s: shorter queries return no match (too few peaks to mean anything).
        max_pitch_shift_semitones, pitch_step_semitones: pure pitch-shift hypotheses.
        speed_factors: turntable speed hypotheses (pitch and tempo together).
        offset_bin_frames: width of an offset histogram bin.
        max_postings_per_hash: hashes more common than this in the index are skipped (they
            vote everywhere and cost most of the search time).
        min_votes: tracks whose best bin scores less are not returned.
        candidate_groups: (track, hypothesis) pairs with the most raw hash matches that get
            an offset histogram; the rest are dropped unsorted, which keeps search time nearly
            flat in catalog size (audfprint shortlists tracks by raw hash count the same way).
    """

    name: ClassVar[str] = "fingerprint"

    def __init__(
        self,
        sample_rate: int = 8000,
        fft_size: int = 1024,
        hop_size: int = 256,
        min_frequency_hz: float = 120.0,
        bin_count: int = 180,
        bins_per_octave: int = 36,
        peak_radius_bins: int = 6,
        peak_radius_frames: int = 4,
        peaks_per_second: float = 30.0,
        fanout: int = 5,
        max_pair_frames: int = 63,
        max_pair_bins: int = 63,
        query_peaks_per_second: float = 30.0,
        query_fanout: int = 5,
        query_shifts: int = 2,
        min_query_s: float = 0.5,
        max_pitch_shift_semitones: float = 2.0,
        pitch_step_semitones: float = 1.0 / 3.0,
        speed_factors: Sequence[float] = (0.94, 0.97, 1.03, 1.06),
        offset_bin_frames: int = 1,
        max_postings_per_hash: int = 1000,
        min_votes: int = 2,
        candidate_groups: int = 64,
    ) -> None:
        self.sample_rate = sample_rate
        self._extractor = LandmarkExtractor(
            sample_rate,
            fft_size,
            hop_size,
            min_frequency_hz,
            bin_count,
            bins_per_octave,
            peak_radius_bins,
            peak_radius_frames,
            peaks_per_second,
            fanout,
            max_pair_frames,
            max_pair_bins,
        )
        self.query_peaks_per_second = query_peaks_per_second
        self.query_fanout = query_fanout
        self.query_shifts = query_shifts
        self.min_query_s = min_query_s
        self.max_pitch_shift_semitones = max_pitch_shift_semitones
        self.pitch_step_semitones = pitch_step_semitones
        self.speed_factors = tuple(float(factor) for factor in speed_factors)
        self.offset_bin_frames = offset_bin_frames
        self.max_postings_per_hash = max_postings_per_hash
        self.min_votes = min_votes
        self.candidate_groups = candidate_groups
        if pitch_step_semitones <= 0:
            raise ValueError(f"pitch_step_semitones must be > 0, got {pitch_step_semitones}")
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

    def settings(self) -> dict[str, Any]:
        return {
            **asdict(self._extractor),
            "query_peaks_per_second": self.query_peaks_per_second,
            "query_fanout": self.query_fanout,
            "query_shifts": self.query_shifts,
            "min_query_s": self.min_query_s,
            "max_pitch_shift_semitones": self.max_pitch_shift_semitones,
            "pitch_step_semitones": self.pitch_step_semitones,
            "speed_factors": list(self.speed_factors),
            "offset_bin_frames": self.offset_bin_frames,
            "max_postings_per_hash": self.max_postings_per_hash,
            "min_votes": self.min_votes,
            "candidate_groups": self.candidate_groups,
        }

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
        steps = int(round(self.max_pitch_shift_semitones / self.pitch_step_semitones))
        semitones = [step * self.pitch_step_semitones for step in range(-steps, steps + 1)]
        pitch = [Hypothesis(shift * bins_per_semitone, 1.0) for shift in semitones if shift]
        speed = [
            Hypothesis(self._extractor.bins_per_octave * float(np.log2(factor)), factor)
            for factor in self.speed_factors
        ]
        return [Hypothesis(0.0, 1.0), *pitch, *speed]

    def search(self, audio: np.ndarray, top_k: int = 5) -> list[TrackMatch]:
        audio = np.asarray(audio, dtype=np.float32)
        if len(audio) < self.min_query_s * self.sample_rate or self.item_count == 0:
            return []
        return self._vote(*self._shortlist(*self._query_landmarks(audio)), top_k)

    def _query_landmarks(self, audio: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """The query's hashes under every hypothesis, from ``query_shifts`` frame grids offset
        by a fraction of a hop (as audfprint does), with their anchor frames on the reference
        time axis and their hypothesis numbers."""
        extractor = self._extractor
        hashes, frames, hypothesis_numbers = [], [], []
        for shift in range(self.query_shifts):
            start = shift * extractor.hop_size // self.query_shifts
            peaks = extractor.peaks(audio[start:], self.query_peaks_per_second)
            anchors, targets = extractor.pairs(peaks, self.query_fanout)
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
            self.max_postings_per_hash,
            len(self.hypotheses),
            SHORTLIST_OFFSET_FRAMES,
        )
        counts, votes = shortlist.count_cells(*arguments, SHORTLIST_TABLE)
        occupied = counts[counts > 0]
        threshold = 0
        if len(occupied) > self.candidate_groups:
            best = np.partition(occupied, -self.candidate_groups)[-self.candidate_groups]
            threshold = max(int(best), self.min_votes)
        return shortlist.collect_votes(*arguments, counts, threshold, votes)

    def _vote(self, group: np.ndarray, offsets: np.ndarray, top_k: int) -> list[TrackMatch]:
        """Offset-histogram voting (Wang 2003): per (track, hypothesis), count the matches per
        (reference frame - scaled query frame) bin; a bin's score adds its two neighbours."""
        if len(group) == 0:
            return []
        offset_bins = np.floor(offsets / self.offset_bin_frames + 0.5).astype(np.int64)
        lowest = int(offset_bins.min()) - 1
        width = int(offset_bins.max()) - lowest + 2  # a free bin either side: no wrap-around
        cell_of_vote = group * width + (offset_bins - lowest)
        cells, scores = _windowed_counts(cell_of_vote)
        cell_tracks = cells // (width * len(self.hypotheses))
        best = _best_per_group(cell_tracks, scores)
        best = best[np.argsort(-scores[best], kind="stable")]
        best = best[scores[best] >= self.min_votes][:top_k]
        seconds_per_frame = self._extractor.hop_size / self.sample_rate
        matches = []
        for cell in best:
            in_window = np.abs(cell_of_vote - cells[cell]) <= 1
            offset_frames = float(np.median(offsets[in_window]))
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
        manifest = {"engine": self.name, "settings": self.settings(), "track_ids": self._track_ids}
        (directory / "fingerprint.json").write_text(json.dumps(manifest, indent=1))
        np.save(directory / "keys.npy", self._keys)
        np.save(directory / "tracks.npy", self._tracks)
        np.save(directory / "frames.npy", self._frames)

    @classmethod
    def load(cls, directory: Path) -> FingerprintEngine:
        """Read an engine written by :meth:`save`; numeric arrays only, no pickle."""
        directory = Path(directory)
        manifest_path = directory / "fingerprint.json"
        if not manifest_path.is_file():
            raise FileNotFoundError(f"{manifest_path}: not an acr fingerprint index")
        manifest = json.loads(manifest_path.read_text())
        if manifest.get("engine") != cls.name:
            raise ValueError(f"{manifest_path}: written by engine {manifest.get('engine')!r}")
        engine = cls(**manifest["settings"])
        engine._track_ids = list(manifest["track_ids"])
        engine._track_ids_set = set(engine._track_ids)
        engine._keys = np.load(directory / "keys.npy", allow_pickle=False)
        engine._tracks = np.load(directory / "tracks.npy", allow_pickle=False)
        engine._frames = np.load(directory / "frames.npy", allow_pickle=False)
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
