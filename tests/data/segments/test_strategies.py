"""acr.data.segments.strategies on synthetic audio whose silences, loud parts, onsets, beats
and repeats are known; and the anchor pools a DataModule draws training anchors from."""

from pathlib import Path

import numpy as np
import pytest
import torch
from fixtures_signals import melody, pluck

from acr.data.segments.analysis import ANALYSIS_DIR, TrackAnalysis, analyze
from acr.data.segments.strategies import HYBRID_WEIGHTS, STRATEGIES, get_strategy
from acr.datamodules import FolderDataModule
from acr.synth import compose_song, render_song, synthesize_track

RATE = 16000
QUIET_S = 10.0  # the loud/quiet track is 30 dB quieter before this
ONSETS_S = (0.4, 1.1, 1.5, 2.35, 3.0, 3.9, 4.2, 5.05, 6.3, 6.9, 7.6, 8.45, 9.1, 9.75)
CLICK_BEAT_S = 0.5
SECTION_S = 6.0  # the A B A C track: sections of this length, A at 0 s and 12 s


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


def test_silence_aware_never_reaches_into_silence(with_silences: TrackAnalysis, silences_s) -> None:
    strategy = get_strategy("silence_aware")
    candidates = strategy.candidates(with_silences, 3.0)
    assert not any(overlaps(c.start_s, 3.0, silences_s) for c in candidates)
    # starts before the first silence, between the two and after the last are all used
    starts = np.array([c.start_s for c in candidates])
    assert starts.min() == 0.0 and 2.8 < starts[starts < 6].max() <= 3.0
    assert ((starts > 9.0) & (starts < 11.2)).sum() > 50 and starts.max() > 16.5
    for seed in range(5):
        chosen = strategy.choose(with_silences, 3.0, np.random.default_rng(seed), 12)
        assert len(chosen) == 12
        assert not any(overlaps(c.start_s, 3.0, silences_s) for c in chosen)
    hybrid = get_strategy("hybrid").candidates(with_silences, 3.0)
    assert hybrid and not any(overlaps(c.start_s, 3.0, silences_s) for c in hybrid)
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


# Anchor pools: training anchors drawn where the strategy points, here the loud half of tracks
# that start quietly.


def _quiet_first_half(seed: int, song: np.ndarray) -> np.ndarray:
    song[: song.size // 2] *= 0.005
    return song


@pytest.fixture(scope="module")
def quiet_first_halves(song_folder) -> Path:
    """Four tracks: 8 s at -46 dB below, then 8 s of the song at full level."""
    return song_folder(4, 16.0, RATE, edit=_quiet_first_half)


def _datamodule(root: Path, data_dir: Path, strategy: str) -> FolderDataModule:
    return FolderDataModule(
        data_dir=str(data_dir),
        root=str(root),
        val_fraction=0.25,
        test_fraction=0.0,
        val_query_tracks=1,
        query_lengths_s=(1.0,),
        query_degradations=("clean",),
        probe_workers=1,
        query_workers=1,
        num_workers=0,
        segment_strategy=strategy,
    )


def _anchor_levels(datamodule: FolderDataModule, draws: int = 40) -> np.ndarray:
    torch.manual_seed(0)  # the dataset draws from torch's generator
    dataset = datamodule.train_dataloader().dataset
    return np.array([float(dataset[i]["anchor"].pow(2).mean().sqrt()) for i in range(draws)])


@pytest.mark.slow
def test_high_energy_anchors_come_from_the_loud_half(
    quiet_first_halves: Path, tmp_path: Path
) -> None:
    datamodule = _datamodule(quiet_first_halves, tmp_path, "high_energy")
    datamodule.prepare_data()
    datamodule.setup("fit")
    analyses = sorted((datamodule.manifest_dir / ANALYSIS_DIR).glob("*.npz"))
    assert len(analyses) == len(datamodule.train_tracks) == 3
    assert _anchor_levels(datamodule).min() > 0.02
    # A second prepare_data (another run, another strategy) reuses the cached analyses.
    stamps = [path.stat().st_mtime_ns for path in analyses]
    again = _datamodule(quiet_first_halves, tmp_path, "onset_aware")
    again.prepare_data()
    assert [path.stat().st_mtime_ns for path in analyses] == stamps


def test_random_anchors_also_land_in_the_quiet_half(
    quiet_first_halves: Path, tmp_path: Path
) -> None:
    datamodule = _datamodule(quiet_first_halves, tmp_path, "random")
    datamodule.prepare_data()
    datamodule.setup("fit")
    assert not (datamodule.manifest_dir / ANALYSIS_DIR).exists()
    assert np.mean(_anchor_levels(datamodule) < 0.02) > 0.2


def test_a_datamodule_refuses_an_unknown_strategy(quiet_first_halves: Path, tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="high_energy"):
        _datamodule(quiet_first_halves, tmp_path, "loudest")
