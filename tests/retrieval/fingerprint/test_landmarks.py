"""acr.retrieval.fingerprint.landmarks: a long track fingerprinted in spans gets exactly the
landmarks of the whole track."""

from __future__ import annotations

import functools

import numpy as np
import pytest
import soundfile

from acr.audio import audio_info, read_audio, read_resampled, resample
from acr.retrieval.fingerprint.landmarks import LandmarkExtractor
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
