"""acr.retrieval.melody: hummed queries find their song, in any key, and the index persists."""

import json
import pickle
from pathlib import Path

import librosa
import numpy as np
import pytest
from fixtures_signals import harmonic_tone

from acr import synth
from acr.pitch import PitchTrack
from acr.retrieval.engine import IndexDirectoryError
from acr.retrieval.melody import Lines, MelodyEngine, MelodySettings
from acr.synth.humming import hum_contour

SAMPLE_RATE = 16000

SEEDS = range(10)  # all leads in seeds 20-29 but one (an inharmonic FM bell) are found as well


@pytest.fixture(scope="module")
def songs() -> list[synth.Song]:
    return [synth.compose_song(seed, duration_s=20.0) for seed in SEEDS]


@pytest.fixture(scope="module")
def contours(songs: list[synth.Song]) -> dict[str, Lines]:
    extract = MelodyEngine().extractor()
    return {str(song.seed): extract(synth.render_song(song)) for song in songs}


def _engine(contours: dict[str, Lines], **settings: object) -> MelodyEngine:
    engine = MelodyEngine(MelodySettings(**settings))
    for track_id, contour in contours.items():
        engine.add(track_id, contour)
    return engine


@pytest.fixture(scope="module")
def engine(contours: dict[str, Lines]) -> MelodyEngine:
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
    contours: dict[str, Lines], songs: list[synth.Song]
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
    assert len(first) == len(second) == 2  # the lead line and the bass line
    for mine, theirs in zip(first, second):
        np.testing.assert_array_equal(mine.pitch_midi, theirs.pitch_midi)
        np.testing.assert_array_equal(mine.voiced_fraction, theirs.voiced_fraction)
        assert len(mine.pitch_midi) == 40  # 0.1-s cells


@pytest.mark.parametrize("samples", [0, SAMPLE_RATE // 5, 3 * SAMPLE_RATE])
def test_silent_or_short_queries_return_nothing(engine: MelodyEngine, samples: int) -> None:
    assert engine.search(np.zeros(samples, np.float32)) == []
    short_hum = _hum(synth.compose_song(0, 10.0), 0.2)[1]
    assert engine.search(short_hum) == []


def test_noise_query_returns_nothing(engine: MelodyEngine) -> None:
    noise = 0.1 * np.random.default_rng(0).standard_normal(5 * SAMPLE_RATE).astype(np.float32)
    assert engine.search(noise) == []


def test_duplicate_track_is_rejected(contours: dict[str, Lines]) -> None:
    engine = _engine(dict(list(contours.items())[:2]))
    track_id, contour = next(iter(contours.items()))
    with pytest.raises(ValueError, match="already"):
        engine.add(track_id, contour)
    assert len(engine.track_ids) == 2


def _notes_hz(rng: np.random.Generator, lowest: int, highest: int, note_s: float) -> np.ndarray:
    """12 s of random notes in MIDI [lowest, highest), per sample."""
    per_note = round(note_s * SAMPLE_RATE)
    notes = rng.integers(lowest, highest, -(-12 * SAMPLE_RATE // per_note)).astype(float)
    return librosa.midi_to_hz(np.repeat(notes, per_note)[: 12 * SAMPLE_RATE])


def test_a_hum_of_the_bass_finds_its_track_by_the_bass_line() -> None:
    """Ten mixes of a loud bass (MIDI 36-47) under a softer lead (64-76): a hum of the bass
    finds its track by the second line, with a wide lead, and not by the lead line alone."""
    rng = np.random.default_rng(0)
    bass_lines, mixes = {}, {}
    for number in range(10):
        bass, lead = _notes_hz(rng, 36, 48, 0.4), _notes_hz(rng, 64, 77, 0.25)
        bass_lines[str(number)] = bass
        mixes[str(number)] = 2 * harmonic_tone(bass) + harmonic_tone(lead)

    def bass_hum(track_id: str) -> np.ndarray:
        f0_hz = bass_lines[track_id][3 * SAMPLE_RATE : 9 * SAMPLE_RATE : SAMPLE_RATE // 100]
        frames = len(f0_hz)
        sung = PitchTrack(
            np.arange(frames) * 0.01, f0_hz, np.ones(frames, bool), np.ones(frames), 0.01
        )
        return hum_contour(sung, SAMPLE_RATE, seed=int(track_id))

    found = {}
    for bass_fmin_hz in (50.0, 0.0):
        engine = MelodyEngine(MelodySettings(bass_fmin_hz=bass_fmin_hz))
        extract = engine.extractor()
        for track_id, mix in mixes.items():
            engine.add(track_id, extract(mix))
        results = {track_id: engine.search(bass_hum(track_id), top_k=2) for track_id in mixes}
        found[bass_fmin_hz] = [t for t, matches in results.items() if matches[0].track_id == t]
        if bass_fmin_hz:
            assert all(m[0].score - m[1].score > 0.2 for m in results.values())
            assert all(abs(m[0].offset_s - 3.0) <= 0.2 for m in results.values())
    assert len(found[50.0]) == 10 and len(found[0.0]) <= 5


def test_an_index_written_before_the_bass_line_is_searched_by_the_lead(
    contours: dict[str, Lines], songs: list[synth.Song], tmp_path: Path
) -> None:
    """A part with 1-d contours and settings without bass_* (as written before) loads as the
    lead line only and answers as an index built with ``bass_fmin_hz`` 0 does."""
    lead_only = _engine(
        {t: lines[:1] for t, lines in contours.items()}, bass_fmin_hz=0.0, bass_penalty=0.0
    )
    lead_only.save(tmp_path / "melody")
    settings_path, contours_path = (
        tmp_path / "melody/settings.json",
        tmp_path / "melody/contours.npz",
    )
    state = json.loads(settings_path.read_text())
    for name in ("bass_fmin_hz", "bass_penalty"):
        del state["settings"][name]
    settings_path.write_text(json.dumps(state))
    with np.load(contours_path) as arrays:
        old = {name: arrays[name] for name in arrays.files}
    np.savez(contours_path, **{**old, "pitch_midi": old["pitch_midi"][0],
                               "voiced_fraction": old["voiced_fraction"][0]})  # fmt: skip
    loaded = MelodyEngine.load(tmp_path / "melody")
    assert loaded.settings == lead_only.settings and len(loaded.settings.lines) == 1
    for song in songs[:3]:
        hum = _hum(song, 5.0, seed=4)[1]
        assert loaded.search(hum) == lead_only.search(hum)
    np.savez(contours_path, **old)  # 2-d arrays of one line: also what a lead-only index writes
    assert MelodyEngine.load(tmp_path / "melody").search(hum) == lead_only.search(hum)
    with np.load(contours_path) as arrays:
        two_lines = {**old, "pitch_midi": np.repeat(arrays["pitch_midi"], 2, axis=0)}
    np.savez(contours_path, **two_lines)
    with pytest.raises(IndexDirectoryError, match=r"contours.npz: .* for 1 lines of"):
        MelodyEngine.load(tmp_path / "melody")


def test_features_of_other_lines_or_settings_are_refused(contours: dict[str, Lines]) -> None:
    engine = MelodyEngine()
    with pytest.raises(ValueError, match="track 'one': 1 melody lines, the settings track 2"):
        engine.add("one", next(iter(contours.values()))[:1])
    assert engine.track_ids == []
    with pytest.raises(ValueError, match="bass_fmin_hz must be 0 .* not 2000"):
        MelodySettings(bass_fmin_hz=2000.0)
