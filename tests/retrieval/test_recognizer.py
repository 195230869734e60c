"""Recognizer: query checks, every engine side by side, and the early-exit cascade."""

import numpy as np
import pytest

from acr import synth
from acr.audio import resample
from acr.retrieval.fingerprint.engine import FingerprintEngine
from acr.retrieval.fusion import QUERY_FEATURES, EarlyExit, Fusion
from acr.retrieval.melody import MelodyEngine
from acr.retrieval.recognizer import Recognizer

RATE = 16000
SEEDS = range(4)


@pytest.fixture(scope="module")
def songs() -> list[synth.Song]:
    return [synth.compose_song(seed, duration_s=20.0) for seed in SEEDS]


@pytest.fixture(scope="module")
def engines(songs: list[synth.Song]) -> dict:
    fingerprint, melody = FingerprintEngine(), MelodyEngine()
    for song in songs:
        audio = synth.render_song(song)
        fingerprint.add_audio(str(song.seed), resample(audio, RATE, fingerprint.sample_rate))
        melody.add_audio(str(song.seed), audio)
    return {"fingerprint": fingerprint, "melody": melody}


def _fusion() -> Fusion:
    """Exit on the fingerprint's top-1 from about 60 votes with a clear lead; otherwise believe
    the melody engine on harmonic queries (a stacked model with only those two weights)."""
    weights = np.zeros(15 * (1 + len(QUERY_FEATURES)))  # 2 engines x 7 features + constant
    weights[2] = 1.0  # fingerprint: candidate is its top-1
    weights[15 + 7 + 2] = 3.0  # melody: candidate is its top-1, times harmonicity
    return Fusion(
        ["fingerprint", "melody"],
        weights.tolist(),
        EarlyExit("fingerprint", [1.0, 1.0, -4.0, 0.0, 0.0, 0.0], 0.9),
    )


def test_clear_excerpt_exits_on_the_fingerprint_alone(engines: dict, songs) -> None:
    excerpt = synth.render_song(songs[2])[5 * RATE : 8 * RATE]
    cascade = Recognizer(engines, _fusion()).recognize(excerpt, RATE)
    assert list(cascade.engine_matches) == ["fingerprint"]
    assert 0.0 < cascade.query_features["harmonicity"] < 1.0  # the exit rule's input
    assert cascade.matches[0].track_id == "2" and cascade.matches[0].score > 0.9
    assert cascade.matches[0].offset_s == pytest.approx(5.0, abs=0.1)
    full = Recognizer(engines, _fusion(), cascade=False).recognize(excerpt, RATE)
    assert sorted(full.engine_matches) == ["fingerprint", "melody"]
    assert [m.track_id for m in full.matches] == [m.track_id for m in cascade.matches]


def test_hum_runs_every_engine_and_the_melody_wins(engines: dict, songs) -> None:
    song = songs[1]
    start_s = max(0.0, song.lead[0].start_s - 0.2)
    hum = synth.render_humming(song, start_s, 6.0, RATE, seed=3)
    recognition = Recognizer(engines, _fusion()).recognize(hum, RATE)
    assert sorted(recognition.engine_matches) == ["fingerprint", "melody"]
    assert recognition.query_features["harmonicity"] > 0.9
    assert recognition.query_features["log_duration_s"] == pytest.approx(np.log(6.0), abs=0.01)
    assert recognition.matches[0].track_id == "1"


@pytest.mark.parametrize(
    "audio, reason",
    [(np.zeros(3 * RATE, np.float32), "silent"), (np.ones(RATE // 5, np.float32), "too short")],
)
def test_unusable_queries_get_an_error_status(engines: dict, audio, reason: str) -> None:
    recognition = Recognizer(engines, _fusion()).recognize(audio, RATE)
    assert recognition.status == "error" and reason in recognition.error
    assert recognition.matches == []
