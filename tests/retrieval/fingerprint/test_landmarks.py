"""acr.retrieval.fingerprint.landmarks: a long track fingerprinted in spans gets exactly the
landmarks of the whole track."""

from __future__ import annotations

import functools
from dataclasses import asdict

import numpy as np
import pytest
import soundfile

from acr.audio import audio_info, read_audio, read_resampled, resample
from acr.retrieval.fingerprint.engine import FingerprintSettings
from acr.retrieval.fingerprint.landmarks import (
    SPECTRUM_FLOOR,
    SPECTRUM_STEP,
    LandmarkExtractor,
    Peaks,
)
from acr.synth import synthesize_track


@pytest.mark.parametrize("file_rate", [44100, 22050, 8000])
def test_a_track_read_in_spans_has_the_landmarks_of_the_whole_track(tmp_path, file_rate):
    path = tmp_path / f"song_{file_rate}.wav"
    soundfile.write(path, synthesize_track(4, 41.0, file_rate), file_rate, subtype="PCM_16")
    extractor = LandmarkExtractor()
    info = audio_info(path)
    whole = extractor(resample(read_audio(path)[0], file_rate, extractor.sample_rate))
    assert len(whole.hashes) > 1000
    read = functools.partial(read_resampled, info, extractor.sample_rate)
    for span_s in (4.0, 9.0, 120.0):  # several spans, a span that is not a whole quota period
        spans = extractor.in_spans(read, span_s)
        np.testing.assert_array_equal(spans.hashes, whole.hashes)
        np.testing.assert_array_equal(spans.frames, whole.frames)
        np.testing.assert_array_equal(spans.spectrum, whole.spectrum)


def test_a_span_read_equals_that_span_of_the_whole_file_resampled(tmp_path):
    path = tmp_path / "song.wav"
    soundfile.write(path, synthesize_track(2, 12.0, 44100), 44100, subtype="PCM_16")
    info = audio_info(path)
    whole = resample(read_audio(path)[0], 44100, 8000)
    for start, stop in [(0, 8000), (12345, 40001)]:
        np.testing.assert_array_equal(read_resampled(info, 8000, start, stop), whole[start:stop])
    # The last block is padded by the resampler at another length: equal to float rounding.
    end = read_resampled(info, 8000, len(whole) - 500, len(whole) + 800)
    np.testing.assert_allclose(end, whole[-500:], rtol=0, atol=1e-6)
    assert len(read_resampled(info, 8000, len(whole) + 10, len(whole) + 20)) == 0


PAIRS = {"hash_peaks": 2, "fanout": 5, "max_pair_frames": 63}  # the landmarks of acr 0.2
TRIPLETS = {"hash_peaks": 3}


def test_hash_fields_of_a_pair_and_a_triplet() -> None:
    """Three peaks: an anchor (frame 10, bin 50) and targets (12, 55) and (15, 40). A pair
    hash is anchor | bin gap + 63 | frame gap in 8 + 7 + 6 bits (acr 0.2's layout); a triplet
    adds the second target's gaps, in 8 + 7 + 5 + 7 + 5 = 32 bits."""
    peaks = Peaks(np.array([10, 12, 15], np.int32), np.array([50.0, 55.0, 40.0], np.float32))
    pairs = LandmarkExtractor(**PAIRS)
    anchors, targets = pairs.landmarks(peaks, 5)
    hashes, valid, frames = pairs.hash_landmarks(peaks, anchors, targets, 0.0, 1.0)
    assert pairs.hash_bits == 21 and valid.all()
    assert hashes.tolist() == [
        (50 << 13) | (68 << 6) | 2,
        (50 << 13) | (53 << 6) | 5,
        (55 << 13) | (48 << 6) | 3,
    ]
    triplets = LandmarkExtractor(**TRIPLETS)
    anchors, targets = triplets.landmarks(peaks, 4)
    hashes, valid, frames = triplets.hash_landmarks(peaks, anchors, targets, 0.0, 1.0)
    assert triplets.hash_bits == 32 and valid.all() and frames.tolist() == [10]
    assert hashes.tolist() == [(((((50 << 7) | 68) << 5 | 2) << 7 | 53) << 5) | 5]
    # Two bins lower and 6 % slower: the anchor and targets move, the gaps stretch.
    hashes, valid, frames = triplets.hash_landmarks(peaks, anchors, targets, 2.0, 1.06)
    assert hashes.tolist() == [(((((48 << 7) | 68) << 5 | 2) << 7 | 53) << 5) | 5]
    assert frames.tolist() == [pytest.approx(10.6)]


def test_landmark_settings_that_do_not_fit_32_bits_are_refused() -> None:
    with pytest.raises(ValueError, match="hash_peaks must be 2"):
        LandmarkExtractor(hash_peaks=4)
    with pytest.raises(ValueError, match="34 bits"):
        LandmarkExtractor(hash_peaks=3, max_pair_frames=63)  # two 6-bit frame gaps
    assert LandmarkExtractor(**PAIRS).hash_bits == 21


def test_settings_left_unset_take_the_preset_of_their_hash() -> None:
    """Pairs (the default): acr 0.2's landmarks, a query twice as dense; triplets: fewer peaks,
    more targets."""
    pairs, triplets = FingerprintSettings(), FingerprintSettings(hash_peaks=3)
    assert (pairs.peaks_per_second, pairs.fanout, pairs.max_pair_frames) == (30.0, 5, 63)
    assert (
        pairs.query_peaks_per_second,
        pairs.query_fanout,
        pairs.pitch_step_semitones,
        pairs.max_postings_per_hash,
    ) == (60.0, 10, 1 / 3, 1000)
    assert (triplets.peaks_per_second, triplets.fanout, triplets.max_pair_frames) == (22.0, 4, 31)
    assert (
        triplets.query_peaks_per_second,
        triplets.query_fanout,
        triplets.pitch_step_semitones,
        triplets.max_postings_per_hash,
    ) == (30.0, 6, 1 / 6, 100)
    assert FingerprintSettings(hash_peaks=2, fanout=3).fanout == 3  # a setting given stays
    assert pairs == FingerprintSettings(**asdict(pairs))  # as an index records them


def test_triplets_spread_a_catalog_over_far_more_hash_values_than_pairs() -> None:
    """What lets a catalog grow: the chance that two postings share a hash (the sum of squared
    hash frequencies) falls from pairs to triplets: 4.7x on these looped synthetic tracks, 74x
    on the soundtrack corpus (1 in 62,000 to 1 in 4.6 million)."""
    audio = [synthesize_track(seed, 30.0, 8000) for seed in range(6)]

    def collision(extractor: LandmarkExtractor) -> float:
        hashes = np.concatenate([extractor(track).hashes for track in audio])
        _, counts = np.unique(hashes, return_counts=True)
        return float(np.sum(counts * (counts - 1.0)) / (len(hashes) * (len(hashes) - 1.0)))

    pairs, triplets = collision(LandmarkExtractor()), collision(LandmarkExtractor(**TRIPLETS))
    assert triplets < pairs / 4


def test_the_verification_spectrogram_holds_a_tone_in_its_band_at_its_level() -> None:
    """One uint8 row per STFT frame and one column per two semitones: a 1-kHz tone is loudest
    in the band of its log-frequency bins, and the stored steps read back as the bands'
    log magnitudes to within half a step."""
    extractor = LandmarkExtractor()
    time = np.arange(4 * extractor.sample_rate) / extractor.sample_rate
    tone = (0.5 * np.sin(2 * np.pi * 1000.0 * time)).astype(np.float32)
    spectrum = extractor.spectrogram(tone)
    stored = extractor(tone).spectrum
    assert stored.dtype == np.uint8 and stored.shape == (spectrum.shape[1], 30)
    tone_bin = extractor.bins_per_octave * np.log2(1000.0 / extractor.min_frequency_hz)
    assert np.bincount(stored.argmax(axis=1)).argmax() == int(tone_bin) // 6
    bands = extractor.band_spectrum(spectrum)
    read_back = SPECTRUM_FLOOR + SPECTRUM_STEP * stored.T.astype(np.float32)
    assert np.abs(read_back - bands).max() <= SPECTRUM_STEP / 2 + 1e-5
    silence = extractor(np.zeros(2 * extractor.sample_rate, np.float32)).spectrum
    assert silence.max() == 0  # the magnitude floor is step 0


def test_verification_bands_must_divide_the_bins_or_be_none() -> None:
    with pytest.raises(ValueError, match="verification_bands must divide bin_count"):
        LandmarkExtractor(verification_bands=7)
    assert LandmarkExtractor(verification_bands=0)(np.ones(8000, np.float32)).spectrum is None
    assert (
        LandmarkExtractor(verification_bands=60)(np.ones(8000, np.float32)).spectrum.shape[1] == 60
    )
