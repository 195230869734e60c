"""Segment strategies on synthetic audio whose silences, loud parts, onsets, beats and repeats
are known, plus the analysis cache and make-queries --strategy."""

import typing
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from acr.audio import save_audio
from acr.cli.data import COMMANDS
from acr.data.manifests import write_table
from acr.data.query_sets import make_queries
from acr.data.segments.analysis import TrackAnalysis, analysis_path, analyze
from acr.data.segments.strategies import HYBRID_WEIGHTS, STRATEGIES, StrategyName, get_strategy
from acr.synth import compose_song, render_song, synthesize_track

RATE = 16000
SILENCES_S = ((6.0, 9.0), (14.0, 15.0))
QUIET_S = 10.0  # the loud/quiet track is 30 dB quieter before this
ONSETS_S = (0.4, 1.1, 1.5, 2.35, 3.0, 3.9, 4.2, 5.05, 6.3, 6.9, 7.6, 8.45, 9.1, 9.75)
CLICK_BEAT_S = 0.5
SECTION_S = 6.0  # the A B A C track: sections of this length, A at 0 s and 12 s


def pluck(midi: int, duration_s: float) -> np.ndarray:
    """A plucked harmonic tone: sharp attack, decay to -35 dB, a 20 ms fade (no offset click)."""
    time_s = np.arange(int(duration_s * RATE)) / RATE
    frequency_hz = 440.0 * 2 ** ((midi - 69) / 12)
    harmonics = sum(np.sin(2 * np.pi * frequency_hz * k * time_s) / k for k in range(1, 5))
    fade = np.clip((duration_s - time_s) / 0.02, 0.0, 1.0)
    return (0.3 * harmonics * np.exp(-4 * time_s / duration_s) * fade).astype(np.float32)


def melody(seed: int, duration_s: float = SECTION_S, note_s: float = 0.25) -> np.ndarray:
    pitches = np.random.default_rng(seed).integers(55, 80, int(duration_s / note_s))
    return np.concatenate([pluck(int(pitch), note_s) for pitch in pitches])


@pytest.fixture(scope="module")
def with_silences() -> TrackAnalysis:
    audio = synthesize_track(1, 20.0, RATE)
    for start_s, end_s in SILENCES_S:
        audio[int(start_s * RATE) : int(end_s * RATE)] = 0.0
    return analyze(audio, RATE)


@pytest.fixture(scope="module")
def quiet_then_loud() -> np.ndarray:
    audio = synthesize_track(2, 20.0, RATE)
    audio[: int(QUIET_S * RATE)] *= 10 ** (-30 / 20)
    return audio


@pytest.fixture(scope="module")
def loudness(quiet_then_loud: np.ndarray) -> TrackAnalysis:
    return analyze(quiet_then_loud, RATE)


@pytest.fixture(scope="module")
def plucks() -> TrackAnalysis:
    audio = np.zeros(int(11.0 * RATE), np.float32)
    for index, onset_s in enumerate(ONSETS_S):
        start = int(onset_s * RATE)
        note = pluck(57 + 3 * (index % 5), 0.3)
        audio[start : start + len(note)] += note
    return analyze(audio, RATE)


@pytest.fixture(scope="module")
def clicks() -> TrackAnalysis:
    """A 1 kHz click every CLICK_BEAT_S, from 0.5 s (librosa tracks 121 BPM)."""
    audio = np.zeros(20 * RATE, np.float32)
    time_s = np.arange(int(0.05 * RATE)) / RATE
    click = (np.sin(2 * np.pi * 1000 * time_s) * np.exp(-time_s / 0.01)).astype(np.float32)
    for beat_s in np.arange(0.5, 19.9, CLICK_BEAT_S):
        audio[int(beat_s * RATE) : int(beat_s * RATE) + len(click)] += click
    return analyze(audio, RATE)


@pytest.fixture(scope="module")
def song_analysis() -> tuple[float, TrackAnalysis]:
    song = compose_song(1, 20.0)  # 121.2 BPM; librosa tracks 121.0
    return song.tempo_bpm, analyze(render_song(song, RATE), RATE)


@pytest.fixture(scope="module")
def chorus() -> TrackAnalysis:
    part_a = melody(1)
    return analyze(np.concatenate([part_a, melody(2), part_a, melody(3)]), RATE)


def overlaps(start_s: float, length_s: float, spans_s) -> bool:
    return any(start_s < end_s and start_s + length_s > begin_s for begin_s, end_s in spans_s)


def test_silence_aware_never_reaches_into_silence(with_silences: TrackAnalysis) -> None:
    strategy = get_strategy("silence_aware")
    candidates = strategy.candidates(with_silences, 3.0)
    assert not any(overlaps(c.start_s, 3.0, SILENCES_S) for c in candidates)
    # starts before the first silence, between the two and after the last are all used
    starts = np.array([c.start_s for c in candidates])
    assert starts.min() == 0.0 and 2.8 < starts[starts < 6].max() <= 3.0
    assert ((starts > 9.0) & (starts < 11.2)).sum() > 50 and starts.max() > 16.5
    for seed in range(5):
        chosen = strategy.choose(with_silences, 3.0, np.random.default_rng(seed), 12)
        assert len(chosen) == 12
        assert not any(overlaps(c.start_s, 3.0, SILENCES_S) for c in chosen)
    hybrid = get_strategy("hybrid").candidates(with_silences, 3.0)
    assert hybrid and not any(overlaps(c.start_s, 3.0, SILENCES_S) for c in hybrid)
    assert get_strategy("silence_aware").candidates(with_silences, 7.0) == []


def test_high_energy_prefers_the_loud_part(loudness: TrackAnalysis) -> None:
    candidates = get_strategy("high_energy").candidates(loudness, 3.0)
    assert candidates[0].score == pytest.approx(1.0)
    assert all(c.start_s >= QUIET_S - 0.2 for c in candidates[:200])
    quiet = [c.score for c in candidates if c.start_s + 3.0 <= QUIET_S]
    assert max(quiet, default=0.0) < 0.1  # 30 dB down on a 30 dB range
    chosen = get_strategy("high_energy").choose(loudness, 3.0, np.random.default_rng(0), 12)
    assert all(c.start_s >= QUIET_S - 0.5 for c in chosen)


def test_onset_aware_starts_on_note_onsets(plucks: TrackAnalysis) -> None:
    candidates = get_strategy("onset_aware").candidates(plucks, 1.0)
    fitting = [onset_s for onset_s in ONSETS_S if onset_s + 1.0 <= 11.0]
    assert len(candidates) == len(fitting)
    for candidate in candidates:
        assert np.min(np.abs(np.array(ONSETS_S) - candidate.start_s)) < 0.05


def test_beat_aware_starts_on_the_click_tracks_beats(clicks: TrackAnalysis) -> None:
    assert clicks.tempo_bpm == pytest.approx(120.0, abs=2.0)
    candidates = get_strategy("beat_aware").candidates(clicks, 3.0)
    assert len(candidates) >= 0.9 * (20.0 - 3.0) / CLICK_BEAT_S
    for candidate in candidates:
        assert (
            abs(candidate.start_s - CLICK_BEAT_S * round(candidate.start_s / CLICK_BEAT_S)) < 0.05
        )


def test_beat_aware_follows_the_songs_tempo(song_analysis) -> None:
    tempo_bpm, analysis = song_analysis
    beat_s = 60.0 / tempo_bpm
    assert analysis.tempo_bpm == pytest.approx(tempo_bpm, abs=2.0)
    starts_s = np.array([c.start_s for c in get_strategy("beat_aware").candidates(analysis, 3.0)])
    assert len(starts_s) >= 0.8 * (20.0 - 3.0) / beat_s
    off_grid_s = np.abs(starts_s - beat_s * np.round(starts_s / beat_s))
    assert np.median(off_grid_s) < 0.025 and np.mean(off_grid_s < 0.05) >= 0.9


def test_repeated_section_aware_prefers_the_repeated_chorus(chorus: TrackAnalysis) -> None:
    def inside_a(start_s: float, length_s: float) -> bool:
        return any(
            begin_s <= start_s and start_s + length_s <= begin_s + SECTION_S
            for begin_s in (0.0, 2 * SECTION_S)
        )

    for length_s in (1.0, 3.0):
        candidates = get_strategy("repeated_section_aware").candidates(chorus, length_s)
        assert all(inside_a(c.start_s, length_s) for c in candidates[:30])
    strategy = get_strategy("repeated_section_aware", pool_fraction=0.05)
    chosen = strategy.choose(chorus, 3.0, np.random.default_rng(0), 10)
    assert all(inside_a(c.start_s, 3.0) for c in chosen)


def test_hybrid_is_the_weighted_mean_of_its_strategies(loudness, plucks) -> None:
    for analysis, name, length_s in ((loudness, "high_energy", 3.0), (plucks, "onset_aware", 1.0)):
        alone = get_strategy(name).candidates(analysis, length_s)
        # the plucks have silent gaps, which hybrid would otherwise avoid
        hybrid = get_strategy("hybrid", weights={name: 2.0, "beat_aware": 0.0}, avoid_silence=False)
        assert hybrid.candidates(analysis, length_s) == alone
    mix = get_strategy("hybrid", weights={"high_energy": 1.0, "repeated_section_aware": 3.0})
    starts_s = np.array([0.5, 4.0, 12.0, 15.5])
    expected = (
        get_strategy("high_energy").scores(loudness, starts_s, 3.0)
        + 3 * get_strategy("repeated_section_aware").scores(loudness, starts_s, 3.0)
    ) / 4
    np.testing.assert_allclose(mix.scores(loudness, starts_s, 3.0), expected)
    assert set(get_strategy("hybrid").weights) == set(HYBRID_WEIGHTS)
    with pytest.raises(ValueError, match="positive weight"):
        get_strategy("hybrid", weights={"high_energy": 0.0})
    with pytest.raises(ValueError, match="unknown segment strategy 'loud'"):
        get_strategy("hybrid", weights={"loud": 1.0})


@pytest.mark.parametrize("name", list(STRATEGIES))
def test_candidates_fit_and_choose_is_seeded(name: str, song_analysis) -> None:
    _, analysis = song_analysis
    strategy = get_strategy(name)
    candidates = strategy.candidates(analysis, 5.0)
    scores = [c.score for c in candidates]
    assert candidates and all(0.0 < s <= 1.0 for s in scores) and scores == sorted(scores)[::-1]
    assert all(0.0 <= c.start_s and c.start_s + 5.0 <= analysis.duration_s for c in candidates)
    first = strategy.choose(analysis, 5.0, np.random.default_rng(7), 4)
    assert len(first) == 4
    assert first == strategy.choose(analysis, 5.0, np.random.default_rng(7), 4)
    assert first != strategy.choose(analysis, 5.0, np.random.default_rng(8), 4)
    assert all(c.start_s + 5.0 <= analysis.duration_s for c in first)
    # a segment longer than the track has nowhere to go
    assert strategy.candidates(analysis, 20.5) == []
    assert strategy.choose(analysis, 20.5, np.random.default_rng(7), 4) == []


def test_unknown_strategy_lists_the_known_ones() -> None:
    with pytest.raises(ValueError, match="known: random, silence_aware, high_energy"):
        get_strategy("chorus_only")


def test_analysis_round_trips_through_npz(with_silences: TrackAnalysis, tmp_path: Path) -> None:
    path = tmp_path / "analysis.npz"
    with_silences.save(path)
    loaded = TrackAnalysis.load(path)
    assert path.stat().st_size < 40_000
    assert loaded.duration_s == with_silences.duration_s == 20.0
    assert loaded.hop_s == with_silences.hop_s == 256 / RATE
    for field in ("rms_db", "non_silent_s", "onset_times_s", "beat_times_s", "repetition"):
        np.testing.assert_array_equal(getattr(loaded, field), getattr(with_silences, field))
    for name in ("silence_aware", "hybrid"):
        strategy = get_strategy(name)
        assert strategy.candidates(loaded, 3.0) == strategy.candidates(with_silences, 3.0)


def test_analysis_of_other_sample_rates_agrees() -> None:
    audio = np.concatenate([np.zeros(2 * RATE, np.float32), melody(4, 4.0)])
    at_16k = analyze(audio, RATE)
    at_32k = analyze(np.repeat(audio, 2), 2 * RATE)  # resampled to 22.05 kHz
    assert at_32k.duration_s == at_16k.duration_s == 6.0
    assert at_16k.non_silent_s[0, 0] == pytest.approx(2.0, abs=0.1)
    assert at_32k.non_silent_s[0, 0] == pytest.approx(2.0, abs=0.1)


def test_make_queries_takes_offsets_from_the_strategy(quiet_then_loud, tmp_path: Path) -> None:
    save_audio(tmp_path / "catalog" / "song.wav", quiet_then_loud, RATE)
    table = make_queries(
        tmp_path / "catalog",
        tmp_path / "queries",
        lengths_s=(1.0, 3.0),
        degradations=("clean", "noise"),
        per_track=2,
        seed=3,
        workers=1,
        strategy="high_energy",
    )
    assert len(table) == 8 and set(table["strategy"]) == {"high_energy"}
    assert (table["offset_s"] >= QUIET_S - 0.5).all()
    with pytest.raises(ValueError, match="unknown segment strategy"):
        make_queries(tmp_path / "catalog", tmp_path / "x", strategy="loudest")


def test_make_queries_caches_analyses_beside_a_table_catalog(
    quiet_then_loud, tmp_path: Path
) -> None:
    song = tmp_path / "music" / "song.wav"
    save_audio(song, quiet_then_loud, RATE)
    catalog = tmp_path / "manifest" / "val.csv"
    write_table(pd.DataFrame({"track_id": ["a/1"], "path": [str(song)]}), catalog)
    options = {"lengths_s": (3.0,), "degradations": ("clean",), "workers": 1, "seed": 1}
    first = make_queries(catalog, tmp_path / "q1", strategy="high_energy", **options)
    cached = analysis_path(catalog.parent, "a/1")
    assert cached.is_file()
    stamp = cached.stat().st_mtime_ns
    second = make_queries(catalog, tmp_path / "q2", strategy="onset_aware", **options)
    assert cached.stat().st_mtime_ns == stamp  # read back, not redone
    assert first["offset_s"].iloc[0] >= QUIET_S - 0.5 and len(second) == 1
    make_queries(song.parent, tmp_path / "q3", strategy="high_energy", **options)
    assert not (song.parent / "analysis").exists()  # nothing written into a folder catalog


def test_make_queries_command_takes_a_strategy() -> None:
    assert set(typing.get_args(StrategyName)) == set(STRATEGIES)
    parser = COMMANDS["data"]["make-queries"].parser("acr data make-queries")
    arguments = ["--catalog", "c", "--output", "o"]
    assert parser.parse_args([*arguments, "--strategy", "beat_aware"]).strategy == "beat_aware"
    assert parser.parse_args(arguments).strategy == "random"
    with pytest.raises(SystemExit):
        parser.parse_args([*arguments, "--strategy", "loudest"])
