"""Landmarks: spectral peaks hashed with their neighbours into 32 bits (Wang 2003, the Shazam
scheme; audfprint, Olaf).

A track's fingerprint is one 32-bit hash per landmark and the anchor's time. A landmark is an
anchor peak and one target (a pair: anchor frequency, frequency difference, time difference) or
two targets (a triplet: the same for each target). The peak map is on a log-frequency axis (36
bins per octave, 120-3840 Hz, peaks refined between bins), where a transposition, and the pitch
half of a turntable speed change, moves every peak by the same number of bins instead of
scaling their spacing: the engine (acr.retrieval.fingerprint.engine) re-hashes a query under
speed and pitch hypotheses with :meth:`LandmarkExtractor.hash_landmarks`.

Pairs or triplets. On the log axis a pair hash has 21 bits, and music uses few of them: on
the soundtrack corpus the postings spread as if over ~62,000 equally likely values (the inverse
of the chance that two postings share a hash), because most targets lie a few frames after
their anchor. At 10^5 tracks (2.6 billion postings) a pair hash would name ~40,000 postings,
so a 3-s query would visit hundreds of millions. A triplet multiplies in a second frequency
difference and time difference (32 bits; Olaf and Panako hash three peaks for the same
reason): 1 in 4.6 million on the corpus. It needs three surviving peaks instead of two, so it
is less robust (top-1 of the corpus's test queries 0.73 against 0.83 with pairs); pairs stay
the default, triplets are for catalogs beyond ~10^4 tracks (README "Scaling").
"""

from __future__ import annotations

import functools
import math
from collections.abc import Callable
from dataclasses import dataclass
from typing import ClassVar, NamedTuple

import numpy as np
import scipy.fft
import scipy.ndimage
import scipy.sparse

# Filtered magnitudes below this (a tone at about -110 dBFS) are silence: no peaks there.
MAGNITUDE_FLOOR = 1e-3
SPAN_S = 120.0  # a long track is fingerprinted this much at a time (LandmarkExtractor.in_spans)
# A verification spectrogram is stored in uint8 steps of this many natural-log units (0.43 dB)
# above the floor: 12.75 units (111 dB) of range, more than the peaks' own.
SPECTRUM_STEP = 0.05
SPECTRUM_FLOOR = math.log(MAGNITUDE_FLOOR)


class Peaks(NamedTuple):
    """Spectral peaks of one clip, sorted by time then frequency."""

    frames: np.ndarray  # int32 STFT frame
    bins: np.ndarray  # float32 log-frequency position, refined between bins


class Landmarks(NamedTuple):
    """A track's features: one 32-bit hash per landmark and the frame of its anchor peak, and
    its coarse spectrogram for verifying candidates (None where ``verification_bands`` is 0)."""

    hashes: np.ndarray  # uint32
    frames: np.ndarray  # int32
    spectrum: np.ndarray | None = None  # uint8 [frames, verification_bands], see band_spectrum


def fill_unset(settings: object, presets: dict[str, float]) -> None:
    """Give a frozen settings dataclass the preset value of each field left None."""
    for name, value in presets.items():
        if getattr(settings, name) is None:
            object.__setattr__(settings, name, value)


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
    """Audio -> landmark hashes (Wang 2003) on a log-frequency axis, so a pitch shift or a
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
    peaks_per_second: float | None = None  # None: the preset of hash_peaks (PRESETS)
    fanout: int | None = None
    max_pair_frames: int | None = None
    max_pair_bins: int = 63
    hash_peaks: int = 2
    verification_bands: int = 30

    # What a None setting becomes, per hash_peaks. Pairs: acr 0.2's landmarks. Triplets:
    # 4 targets (6 triplets an anchor) from 22 peaks a second, 128 postings a second of audio,
    # chosen on the soundtrack corpus among 3-5 targets and 22-40 peaks (experiments/README).
    PRESETS: ClassVar[dict[int, dict[str, float]]] = {
        2: {"peaks_per_second": 30.0, "fanout": 5, "max_pair_frames": 63},
        3: {"peaks_per_second": 22.0, "fanout": 4, "max_pair_frames": 31},
    }

    def __post_init__(self) -> None:
        """Fill the settings left to the preset; reject hash fields that would not fit in 32
        bits."""
        if self.hash_peaks not in self.PRESETS:
            raise ValueError(f"hash_peaks must be 2 (pairs) or 3 (triplets), got {self.hash_peaks}")
        fill_unset(self, self.PRESETS[self.hash_peaks])
        if self.verification_bands < 0 or (
            self.verification_bands and self.bin_count % self.verification_bands
        ):
            raise ValueError(
                f"verification_bands must divide bin_count ({self.bin_count}) or be 0,"
                f" got {self.verification_bands}"
            )
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
        """Hash width: anchor bin, then per target its bin difference + max_pair_bins and its
        frame difference."""
        anchor_bits, gap_bits, frame_bits = self._field_bits
        return anchor_bits + (self.hash_peaks - 1) * (gap_bits + frame_bits)

    def __call__(self, audio: np.ndarray) -> Landmarks:
        """The landmarks of one catalog track (mono float32 at ``sample_rate``)."""
        spectrum = self.spectrogram(audio)
        peaks = self._peaks(spectrum, self.peaks_per_second)
        anchors, targets = self.landmarks(peaks, self.fanout)
        hashes, valid, frames = self.hash_landmarks(peaks, anchors, targets, 0.0, 1.0)
        return Landmarks(hashes[valid], frames[valid].astype(np.int32), self.stored(spectrum))

    def of_peaks(self, peaks: Peaks) -> Landmarks:
        """The landmarks of a catalog track's peaks (as :meth:`peaks` finds them), without a
        verification spectrogram (benchmarks that make peaks without audio)."""
        anchors, targets = self.landmarks(peaks, self.fanout)
        hashes, valid, frames = self.hash_landmarks(peaks, anchors, targets, 0.0, 1.0)
        return Landmarks(hashes[valid], frames[valid].astype(np.int32))

    def band_spectrum(self, spectrum: np.ndarray) -> np.ndarray:
        """A spectrogram's ``verification_bands`` bands (the log of each band's mean magnitude),
        [bands, frames] float32: what a candidate is verified on (FingerprintEngine.search)."""
        width = self.bin_count // self.verification_bands
        magnitude = np.exp(spectrum).reshape(self.verification_bands, width, -1).mean(axis=1)
        return np.log(magnitude).astype(np.float32)

    def stored(self, spectrum: np.ndarray) -> np.ndarray | None:
        """:meth:`band_spectrum` as an index stores it: uint8 [frames, bands], SPECTRUM_STEP
        natural-log units a step above SPECTRUM_FLOOR; None where verification_bands is 0."""
        if not self.verification_bands:
            return None
        steps = (self.band_spectrum(spectrum) - SPECTRUM_FLOOR) / SPECTRUM_STEP
        return np.ascontiguousarray(np.clip(np.rint(steps), 0, 255).astype(np.uint8).T)

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
        # scipy's FFT keeps float32 (numpy's works in float64): half the time, and the same
        # landmarks on the corpus tracks tried.
        magnitude = np.abs(scipy.fft.rfft(frames * window, axis=1))
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
        return self._peaks(self.spectrogram(audio), peaks_per_second)

    def _peaks(
        self,
        spectrum: np.ndarray,
        peaks_per_second: float,
        first_frame: int = 0,
        keep: tuple[int, float] = (0, np.inf),
    ) -> Peaks:
        """:meth:`peaks` of a spectrogram whose column 0 is frame ``first_frame`` of the track,
        keeping the peaks whose frame lies in ``keep`` [from, to)."""
        size = (2 * self.peak_radius_bins + 1, 2 * self.peak_radius_frames + 1)
        neighbourhood_max = scipy.ndimage.maximum_filter(spectrum, size, mode="nearest")
        is_peak = (spectrum == neighbourhood_max) & (spectrum > np.log(MAGNITUDE_FLOOR))
        bins, columns = np.nonzero(is_peak)
        frames = columns + first_frame
        kept = (frames >= keep[0]) & (frames < keep[1])
        bins, columns, frames = bins[kept], columns[kept], frames[kept]
        strength = spectrum[bins, columns]
        frames_per_second = self.sample_rate / self.hop_size
        second = (frames / frames_per_second).astype(np.int64)
        order = np.lexsort((-strength, second))
        first_of_second = np.searchsorted(second[order], second[order])
        rank = np.arange(len(order)) - first_of_second
        keep_peaks = order[rank < peaks_per_second]
        keep_peaks = keep_peaks[np.lexsort((bins[keep_peaks], frames[keep_peaks]))]
        return Peaks(
            frames[keep_peaks].astype(np.int32),
            self._refine(spectrum, bins[keep_peaks], columns[keep_peaks]),
        )

    def in_spans(self, read: Callable[[int, int], np.ndarray], span_s: float = SPAN_S) -> Landmarks:
        """The landmarks of a track read in spans (``read(start, stop)``: its samples at
        ``sample_rate``, shorter at the end), equal to :meth:`__call__` on the whole track, in
        memory bounded by the span instead of the track's length.

        Spans start on a whole second of the peak quota, and each is read with the context its
        peaks and pairs need: ``peak_radius_frames`` before, and after it the target zone
        (``max_pair_frames``, rounded up to whole quota seconds) plus ``peak_radius_frames``.
        """
        hop, radius = self.hop_size, self.peak_radius_frames
        # The quota's seconds start on a whole frame every `period` seconds (4 s at 8 kHz, 256).
        period_frames = self.sample_rate // math.gcd(self.sample_rate, self.hop_size)
        span = max(1, round(span_s * self.sample_rate / hop / period_frames)) * period_frames
        margin = math.ceil((self.max_pair_frames + 1) / period_frames) * period_frames
        hashes, frames, spectra = [], [], []
        start, end = 0, np.inf  # frames; the track's end is known once a read comes back short
        while start < end:
            first = max(start - radius, 0)
            wanted = start + span + margin + radius  # frames [first, wanted)
            audio = read(first * hop, (wanted - 1) * hop + self.fft_size)
            spectrum = self.spectrogram(audio)
            if len(audio) < (wanted - 1) * hop + self.fft_size:
                end = first + spectrum.shape[1]
            stop = min(start + span, end)
            peaks = self._peaks(spectrum, self.peaks_per_second, first, (start, stop + margin))
            anchors, targets = self.landmarks(peaks, self.fanout)
            span_hashes, valid, anchor_frames = self.hash_landmarks(
                peaks, anchors, targets, 0.0, 1.0
            )
            valid &= anchor_frames < stop
            hashes.append(span_hashes[valid])
            frames.append(anchor_frames[valid].astype(np.int32))
            spectra.append(self.stored(spectrum[:, start - first : stop - first]))
            start = stop
        # The loop ran at least once (end starts unknown), so every list holds a span.
        spectrum = None if spectra[0] is None else np.concatenate(spectra)
        return Landmarks(np.concatenate(hashes), np.concatenate(frames), spectrum)

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

    def landmarks(self, peaks: Peaks, fanout: int) -> tuple[np.ndarray, np.ndarray]:
        """Anchor peak indices [n] and their targets' [n, hash_peaks - 1]: each anchor's next
        ``fanout`` peaks within ``max_pair_frames`` and ``max_pair_bins`` (the target zone, Wang
        2003), taken one at a time (pairs) or two at a time in time order (triplets: every two
        of them, so a target missing from a query's peaks spoils fewer of its triplets)."""
        count = len(peaks.frames)
        width = self.hash_peaks - 1
        if count < 2:
            return np.zeros(0, dtype=np.int64), np.zeros((0, width), dtype=np.int64)
        lookahead = np.arange(1, 4 * fanout + 1)
        anchors = np.arange(count)[:, None]
        targets = anchors + lookahead[None, :]
        inside = targets < count
        targets = np.minimum(targets, count - 1)
        frame_gap = peaks.frames[targets] - peaks.frames[anchors]
        bin_gap = np.abs(peaks.bins[targets] - peaks.bins[anchors])
        inside &= (frame_gap > 0) & (frame_gap <= self.max_pair_frames)
        inside &= bin_gap <= self.max_pair_bins - 1
        rank = np.cumsum(inside, axis=1)
        inside &= rank <= fanout
        if width == 1:
            return np.broadcast_to(anchors, targets.shape)[inside], targets[inside][:, None]
        chosen = np.full((count, fanout), -1, dtype=np.int64)  # each anchor's targets, in order
        rows, columns = np.nonzero(inside)
        chosen[rows, rank[rows, columns] - 1] = targets[rows, columns]
        first, second = np.triu_indices(fanout, 1)
        present = chosen[:, second] >= 0  # the ranks fill from the left: first is there too
        anchor_of = np.broadcast_to(anchors, present.shape)[present]
        return anchor_of, np.stack([chosen[:, first][present], chosen[:, second][present]], 1)

    def hash_landmarks(
        self,
        peaks: Peaks,
        anchors: np.ndarray,
        targets: np.ndarray,
        shift_bins: float,
        time_scale: float,
    ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Hashes of landmarks as they would sound ``shift_bins`` lower and ``time_scale``
        slower: the anchor bin, then per target its bin difference and frame difference.

        Returns (hashes, valid, anchor frames on the scaled time axis).
        """
        anchor_bin = np.rint(peaks.bins[anchors] - shift_bins).astype(np.int64)
        valid = (anchor_bin >= 0) & (anchor_bin < self.bin_count)
        _, gap_bits, frame_bits = self._field_bits
        hashes = anchor_bin
        for column in range(targets.shape[1]):
            target = targets[:, column]
            bin_gap = np.rint(peaks.bins[target] - shift_bins).astype(np.int64) - anchor_bin
            frame_gap = peaks.frames[target] - peaks.frames[anchors]
            frame_gap = np.rint(frame_gap * time_scale).astype(np.int64)
            valid &= (np.abs(bin_gap) <= self.max_pair_bins) & (frame_gap <= self.max_pair_frames)
            hashes = (hashes << gap_bits) | (bin_gap + self.max_pair_bins)
            hashes = (hashes << frame_bits) | frame_gap
        frames = peaks.frames[anchors] * time_scale
        # Invalid rows may hold negative fields; masking keeps the cast well defined.
        return (hashes & 0xFFFFFFFF).astype(np.uint32), valid, frames
