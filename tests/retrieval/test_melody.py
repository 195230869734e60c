"""acr.retrieval.melody: hummed queries find their song, in any key, and the index persists."""

import json
import pickle
from pathlib import Path

import librosa
import numpy as np
import pytest

from acr import synth
from acr.retrieval.melody import MelodyContour, MelodyEngine, MelodySettings

SAMPLE_RATE = 16000

SEEDS = range(10)  # all leads in seeds 20-29 but one (an inharmonic FM bell) are found as well


@pytest.fixture(scope="module")
def songs() -> list[synth.Song]:
    return [synth.compose_song(seed, duration_s=20.0) for seed in SEEDS]


@pytest.fixture(scope="module")
def contours(songs: list[synth.Song]) -> dict[str, MelodyContour]:
    extract = MelodyEngine().extractor()
    return {str(song.seed): extract(synth.render_song(song)) for song in songs}


def _engine(contours: dict[str, MelodyContour], **settings: object) -> MelodyEngine:
    engine = MelodyEngine(MelodySettings(**settings))
    for track_id, contour in contours.items():
        engine.add(track_id, contour)
    return engine


@pytest.fixture(scope="module")
def engine(contours: dict[str, MelodyContour]) -> MelodyEngine:
    return _engine(contours)


def _hum(song: synth.Song, duration_s: float = 8.0, seed: int = 0) -> tuple[float, np.ndarray]:
    start_s = max(0.0, song.lead[0].start_s - 0.2)
    return start_s, synth.render_humming(song, start_s, duration_s, SAMPLE_RATE, seed)


def test_hummed_query_ranks_its_song_first(engine: MelodyEngine, songs: list[synth.Song]) -> None:
    for song in songs:
        start_s, hum = _hum(song, seed=1)
        matches = engine.search(hum, top_k=3)
        assert matches[0].track_id == str(song.seed)
        assert abs(matches[0].offset_s - start_s) <= 0.2
        assert matches[0].score > matches[1].score


def test_window_search_finds_candidates_in_a_larger_catalog(
    contours: dict[str, MelodyContour], songs: list[synth.Song]
) -> None:
    """With fewer candidates than tracks, the hnswlib window search picks what gets re-ranked."""
    engine = _engine(contours, candidates=3)
    found = [engine.search(_hum(song, seed=2)[1], top_k=1)[0].track_id for song in songs]
    assert found == [str(song.seed) for song in songs]


def test_transposed_query_gives_the_same_top_result(
    engine: MelodyEngine, songs: list[synth.Song]
) -> None:
    for song in songs[:4]:
        hum = _hum(song)[1]
        raised = librosa.effects.pitch_shift(hum, sr=SAMPLE_RATE, n_steps=3)
        top = engine.search(hum, top_k=1)[0]
        raised_top = engine.search(raised, top_k=1)[0]
        assert raised_top.track_id == top.track_id == str(song.seed)
        assert raised_top.offset_s == pytest.approx(top.offset_s, abs=0.2)


def test_slower_query_is_still_found(engine: MelodyEngine, songs: list[synth.Song]) -> None:
    for song in songs[:4]:
        slower = librosa.effects.time_stretch(_hum(song, 9.0)[1], rate=1 / 1.1)
        assert engine.search(slower, top_k=1)[0].track_id == str(song.seed)


def test_mix_excerpt_finds_itself_at_its_offset(
    engine: MelodyEngine, songs: list[synth.Song]
) -> None:
    song = songs[5]
    excerpt = synth.render_song(song)[7 * SAMPLE_RATE : 12 * SAMPLE_RATE]
    top = engine.search(excerpt, top_k=1)[0]
    assert top.track_id == str(song.seed) and top.offset_s == pytest.approx(7.0, abs=0.1)


def test_save_load_round_trip(
    engine: MelodyEngine, songs: list[synth.Song], tmp_path: Path
) -> None:
    engine.save(tmp_path / "melody")
    loaded = MelodyEngine.load(tmp_path / "melody")
    assert loaded.settings == engine.settings
    assert loaded.track_ids == engine.track_ids and loaded.item_count == engine.item_count
    for song in songs[:3]:
        hum = _hum(song, 5.0, seed=3)[1]
        assert loaded.search(hum) == engine.search(hum)
    with pytest.raises(FileExistsError):
        engine.save(tmp_path / "melody")


def test_settings_rebuild_an_empty_engine(engine: MelodyEngine) -> None:
    settings = json.loads(json.dumps(engine.recorded_settings()))
    rebuilt = MelodyEngine(MelodySettings(**settings))
    assert rebuilt.settings == engine.settings
    assert rebuilt.track_ids == [] and rebuilt.item_count == 0
    assert rebuilt.search(_hum(synth.compose_song(0, 10.0))[1]) == []


def test_extractor_is_picklable_and_stateless(engine: MelodyEngine) -> None:
    extract = pickle.loads(pickle.dumps(engine.extractor()))
    audio = synth.render_humming(synth.compose_song(1, 10.0), 0.0, 4.0)
    first, second = extract(audio), engine.extractor()(audio)
    np.testing.assert_array_equal(first.pitch_midi, second.pitch_midi)
    np.testing.assert_array_equal(first.voiced_fraction, second.voiced_fraction)
    assert len(first.pitch_midi) == 40  # 0.1-s cells


@pytest.mark.parametrize("samples", [0, SAMPLE_RATE // 5, 3 * SAMPLE_RATE])
def test_silent_or_short_queries_return_nothing(engine: MelodyEngine, samples: int) -> None:
    assert engine.search(np.zeros(samples, np.float32)) == []
    short_hum = _hum(synth.compose_song(0, 10.0), 0.2)[1]
    assert engine.search(short_hum) == []


def test_noise_query_returns_nothing(engine: MelodyEngine) -> None:
    noise = 0.1 * np.random.default_rng(0).standard_normal(5 * SAMPLE_RATE).astype(np.float32)
    assert engine.search(noise) == []


def test_duplicate_track_is_rejected(contours: dict[str, MelodyContour]) -> None:
    engine = _engine(dict(list(contours.items())[:2]))
    track_id, contour = next(iter(contours.items()))
    with pytest.raises(ValueError, match="already"):
        engine.add(track_id, contour)
    assert len(engine.track_ids) == 2
