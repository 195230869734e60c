"""acr.retrieval.extraction: one track never aborts a build; what cannot be used comes back as
the reason it was skipped, in catalog order."""

from __future__ import annotations

import struct
from pathlib import Path

import numpy as np
import pytest
import soundfile
from fixtures_faults import KillsItsWorker

from acr.audio import MIN_MUSIC_S
from acr.retrieval.extraction import extract_in_workers

RATE = 16000


def _tone(seconds: float) -> np.ndarray:
    return (0.3 * np.sin(2 * np.pi * 440 * np.arange(int(seconds * RATE)) / RATE)).astype("f4")


def _garbage(folder: Path) -> dict[str, tuple[Path, str]]:
    """Files that cannot hold music, each with (a word of) the reason it must be skipped."""
    files = {}
    nan = folder / "nan.wav"
    soundfile.write(nan, np.full(RATE, np.nan, np.float32), RATE, subtype="FLOAT")
    files["nan"] = (nan, "non-finite")
    one = folder / "one_sample.wav"
    soundfile.write(one, _tone(1.0)[:1], RATE)
    files["one_sample"] = (one, "too short")
    slow = folder / "rate_50hz.wav"
    soundfile.write(slow, _tone(1.0)[:200], 50)
    files["rate_50hz"] = (slow, "below 8000 Hz")
    huge = folder / "claims_2gb.wav"  # a header that says 2 GB over 20 samples of data
    soundfile.write(huge, _tone(1.0)[:20], RATE, subtype="PCM_16")
    data = bytearray(huge.read_bytes())
    at = data.find(b"data")
    data[at + 4 : at + 8] = struct.pack("<I", 2_000_000_000)
    data[4:8] = struct.pack("<I", 2_000_000_036)
    huge.write_bytes(bytes(data))
    files["claims_2gb"] = (huge, "too short")
    mp3 = folder / "corrupt.mp3"
    mp3.write_bytes(b"\xff\xfb\x90\x00" + bytes(range(256)) * 20)
    files["corrupt"] = (mp3, "corrupt")
    return files


def test_garbage_files_are_skipped_with_their_reason_and_good_ones_extracted(tmp_path):
    good = tmp_path / "good.wav"
    soundfile.write(good, _tone(2.0), RATE)
    garbage = _garbage(tmp_path)
    jobs = [("good", str(good))] + [(name, str(path)) for name, (path, _) in garbage.items()]
    results = {
        track: (features, duration)
        for track, _, features, duration in extract_in_workers(
            jobs, [("probe", RATE, len)], workers=1
        )
    }
    assert results["good"] == ({"probe": 2 * RATE}, 2.0)
    for name, (_, reason) in garbage.items():
        assert isinstance(results[name][0], str) and reason in results[name][0], name
    assert MIN_MUSIC_S > 20 / RATE


@pytest.mark.slow  # spawned pools: the parallel one, then one-worker pools for the suspects
def test_a_track_that_kills_its_worker_is_skipped_and_the_others_extracted(tmp_path):
    lengths_s = [1.0, 1.25, 1.5, 1.75, 2.0, 2.25]
    killer = 2  # the third track: 1.5 s
    jobs = []
    for number, seconds in enumerate(lengths_s):
        path = tmp_path / f"track{number}.wav"
        soundfile.write(path, _tone(seconds), RATE)
        jobs.append((f"track{number}", str(path)))
    extractor = KillsItsWorker(samples=int(lengths_s[killer] * RATE))
    results = list(extract_in_workers(jobs, [("probe", RATE, extractor)], workers=2))
    assert [track for track, *_ in results] == [track for track, _ in jobs]  # catalog order
    for number, (_, _, features, _) in enumerate(results):
        if number == killer:
            assert isinstance(features, str) and "died 2 times" in features
        else:
            assert features == {"probe": int(lengths_s[number] * RATE)}


def test_a_long_track_is_read_in_spans_by_every_engine_with_the_features_of_the_whole(
    tmp_path, monkeypatch
):
    """The hybrid's three extractors on a track made long: the fingerprint's landmarks and the
    melody's contour equal the whole track's, and the embedding engine gets a reader of the
    file (not its samples) that reads what the whole track resampled holds."""
    from acr.audio import Resampled, read_audio, resample
    from acr.retrieval import extraction
    from acr.retrieval.engine import AudioPassthrough
    from acr.retrieval.fingerprint.landmarks import LandmarkExtractor
    from acr.retrieval.melody import MelodySettings
    from acr.synth import synthesize_track

    path = tmp_path / "long.wav"
    soundfile.write(path, synthesize_track(6, 30.0, 22050), 22050, subtype="PCM_16")
    fingerprint, melody = LandmarkExtractor(), MelodySettings().extractor()
    extractors = [
        ("fingerprint", fingerprint.sample_rate, fingerprint),
        ("melody", melody.sample_rate, melody),
        ("embedding", RATE, AudioPassthrough()),
    ]
    jobs = [("long", str(path))]
    [(_, _, whole, duration_s)] = extract_in_workers(jobs, extractors, workers=1)
    spans_read = []
    in_spans = LandmarkExtractor.in_spans

    def counted(self, read, span_s=8.0):  # several spans of the 30-s track
        spans_read.append(span_s)
        return in_spans(self, read, span_s)

    monkeypatch.setattr(extraction, "LONG_TRACK_S", 10.0)  # this 30-s track is now long
    monkeypatch.setattr(LandmarkExtractor, "in_spans", counted)
    [(_, _, spans, span_duration_s)] = extract_in_workers(jobs, extractors, workers=1)
    assert spans_read == [8.0] and span_duration_s == duration_s == 30.0
    assert len(whole["fingerprint"].hashes) > 1000
    np.testing.assert_array_equal(spans["fingerprint"].hashes, whole["fingerprint"].hashes)
    np.testing.assert_array_equal(spans["fingerprint"].frames, whole["fingerprint"].frames)
    assert len(whole["melody"]) == len(spans["melody"]) == 2  # the lead and the bass line
    for in_spans, at_once in zip(spans["melody"], whole["melody"]):
        assert np.mean(at_once.voiced_fraction) > 0.3
        np.testing.assert_array_equal(in_spans.pitch_midi, at_once.pitch_midi)
        np.testing.assert_array_equal(in_spans.voiced_fraction, at_once.voiced_fraction)
    reader = spans["embedding"]
    assert isinstance(reader, Resampled) and len(reader) == len(whole["embedding"])
    resampled = resample(*read_audio(path), RATE)
    np.testing.assert_allclose(reader(RATE * 11, RATE * 13), resampled[RATE * 11 : RATE * 13],
                               atol=1e-6)  # fmt: skip
