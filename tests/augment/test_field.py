"""The field suite (acr.augment.field): the same names as acr's own degradations, made by
independent generators, each doing what its name says, reproducibly."""

from typing import get_args

import numpy as np
import pandas as pd
import pytest
from fixtures_signals import SAMPLE_RATE, melody, music_like, peak_frequency_hz, power, sine

from acr.audio import load_audio, save_audio
from acr.augment import field
from acr.augment.degradations import (
    DEGRADATION_NAMES,
    FIELD_DEGRADATIONS,
    HUMMING,
    SUITES,
    Suite,
    degrade,
)
from acr.data.query_sets import make_queries

DAMAGE = [name for name in DEGRADATION_NAMES if name != HUMMING]


def test_the_field_suite_names_every_degradation_of_acrs_own() -> None:
    assert tuple(FIELD_DEGRADATIONS) == DEGRADATION_NAMES
    assert get_args(Suite) == tuple(SUITES)  # the CLI's choices are the registry's suites


@pytest.mark.parametrize("degradation", DAMAGE)
def test_field_degradations_are_reproducible_and_differ_from_acrs_own(degradation: str) -> None:
    audio = music_like(2.0)
    made, params = degrade(audio, SAMPLE_RATE, degradation, np.random.default_rng(3), "field")
    again, params_again = degrade(
        audio, SAMPLE_RATE, degradation, np.random.default_rng(3), "field"
    )
    assert params == params_again and np.array_equal(made, again)
    assert made.dtype == np.float32 and np.all(np.isfinite(made))
    if degradation != "speed":
        assert made.shape == audio.shape
    own, _ = degrade(audio, SAMPLE_RATE, degradation, np.random.default_rng(3), "acr")
    assert (degradation == "clean") == (own.shape == made.shape and np.array_equal(own, made))


def test_field_noise_is_a_crowd_at_the_drawn_snr() -> None:
    audio = music_like(3.0)
    for seed in range(3):
        noisy, params = degrade(audio, SAMPLE_RATE, "noise", np.random.default_rng(seed), "field")
        assert 0.0 <= params["snr_db"] <= 10.0 and 4 <= params["talkers"] <= 8
        measured = 10 * np.log10(power(audio) / power(noisy.astype(np.float64) - audio))
        assert measured == pytest.approx(params["snr_db"], abs=0.05)

    # Voices: most of a crowd's power is in the speech band, where pink noise has a quarter.
    def speech_band_share(noise: np.ndarray) -> float:
        spectrum = np.abs(np.fft.rfft(noise)) ** 2
        frequencies = np.fft.rfftfreq(noise.size, 1 / SAMPLE_RATE)
        return spectrum[(frequencies >= 200) & (frequencies < 4000)].sum() / spectrum.sum()

    crowd, params = field.crowd(5 * SAMPLE_RATE, SAMPLE_RATE, np.random.default_rng(0))
    assert 0.2 <= params["pink_share"] <= 0.6
    assert speech_band_share(crowd) > 0.6
    assert speech_band_share(field._voss_pink(5 * SAMPLE_RATE, np.random.default_rng(0))) < 0.35


def test_voss_pink_noise_falls_3_db_an_octave() -> None:
    noise = field._voss_pink(2**18, np.random.default_rng(0))
    spectrum = np.abs(np.fft.rfft(noise)) ** 2
    frequencies = np.fft.rfftfreq(noise.size, 1 / SAMPLE_RATE)
    octave_db = [
        10 * np.log10(spectrum[(frequencies >= low) & (frequencies < 2 * low)].mean())
        for low in (100.0, 200.0, 400.0, 800.0)
    ]
    assert np.diff(octave_db) == pytest.approx([-3.0] * 3, abs=1.0)
    assert power(noise) == pytest.approx(1.0, rel=1e-3)


def test_field_speed_and_pitch_move_a_tone_by_the_drawn_amount() -> None:
    tone = sine(440.0, 2.0)
    for seed in range(3):
        rng = np.random.default_rng(seed)
        faster, params = degrade(tone, SAMPLE_RATE, "speed", rng, "field")
        factor = params["speed_factor"]
        assert 0.03 <= abs(factor - 1) <= 0.06
        assert peak_frequency_hz(faster) == pytest.approx(440.0 * factor, rel=0.002)
        assert len(faster) == pytest.approx(len(tone) / factor, abs=2)
        shifted, params = degrade(tone, SAMPLE_RATE, "pitch", rng, "field")
        assert 1.0 <= abs(params["semitones"]) <= 2.0
        assert peak_frequency_hz(shifted) == pytest.approx(
            440.0 * 2 ** (params["semitones"] / 12), rel=0.005
        )


def test_field_phone_keeps_the_speech_band_through_opus() -> None:
    settled = slice(SAMPLE_RATE // 2, None)
    kept = {}
    for frequency_hz in (100.0, 1000.0, 6000.0):
        tone = sine(frequency_hz, 2.0)
        coded, params = degrade(tone, SAMPLE_RATE, "phone_codec", np.random.default_rng(0), "field")
        assert 6000 <= params["bitrate"] < 12000
        kept[frequency_hz] = power(coded[settled]) / power(tone[settled])
    assert kept[1000.0] > 0.3 and kept[100.0] < 0.05 and kept[6000.0] < 0.01


def test_field_reverb_leaves_a_tail_and_keeps_the_direct_sound_in_place() -> None:
    click = np.zeros(SAMPLE_RATE, np.float32)
    click[100] = 1.0
    wet, params = degrade(click, SAMPLE_RATE, "reverb", np.random.default_rng(0), "field")
    assert int(np.argmax(np.abs(wet))) == 100
    tail = wet[100 + SAMPLE_RATE // 10 : 100 + SAMPLE_RATE // 5]  # 100-200 ms after the click
    assert power(tail) > 1e-7 and 0.3 <= params["room_size"] <= 0.7


def test_field_live_mix_is_loud_band_limited_and_noisy() -> None:
    audio = melody(0, 3.0)
    mixed, params = degrade(audio, SAMPLE_RATE, "live_mix", np.random.default_rng(0), "field")
    assert 5 <= params["snr_db"] <= 15 and 6 <= params["drive_db"] <= 12
    assert float(np.abs(mixed).max()) <= 1.05  # driven to full scale, then an mp3
    spectrum = np.abs(np.fft.rfft(mixed)) ** 2
    frequencies = np.fft.rfftfreq(mixed.size, 1 / SAMPLE_RATE)
    assert spectrum[frequencies > 7500].sum() < 0.01 * spectrum.sum()


def test_crowd_noise_without_espeak_ng_names_it(monkeypatch: pytest.MonkeyPatch) -> None:
    field.crowd_bank.cache_clear()
    monkeypatch.setenv("PATH", "")
    with pytest.raises(ValueError, match="espeak-ng on PATH"):
        degrade(music_like(), SAMPLE_RATE, "noise", np.random.default_rng(0), "field")
    field.crowd_bank.cache_clear()


def test_unknown_suite_is_named() -> None:
    with pytest.raises(ValueError, match="suite: unknown 'lab'; known: acr, field"):
        degrade(music_like(), SAMPLE_RATE, "noise", np.random.default_rng(0), "lab")  # type: ignore[arg-type]


def test_make_queries_field_suite_writes_a_suite_bucket(tmp_path) -> None:
    for name in ("a", "b"):
        save_audio(tmp_path / f"{name}.wav", melody(ord(name), 6.0), SAMPLE_RATE)
    table = make_queries(
        str(tmp_path),
        str(tmp_path / "queries"),
        lengths_s=[1.0],
        degradations=["clean", "noise"],
        workers=1,
        suite="field",
    )
    assert len(table) == 4 and set(table["suite"]) == {"field"}
    written = pd.read_csv(tmp_path / "queries" / "queries.csv")
    assert list(written["suite"]) == ["field"] * 4
    noisy = written[written["degradation"] == "noise"].iloc[0]
    audio = load_audio(tmp_path / "queries" / noisy["path"], SAMPLE_RATE)
    assert audio.size == SAMPLE_RATE and "talkers=" in noisy["degradation_params"]
    own = make_queries(
        str(tmp_path), str(tmp_path / "own"), lengths_s=[1.0], degradations=["noise"], workers=1
    )
    assert "suite" not in own.columns


def test_crowds_speak_the_recordings_of_speech_dir(tmp_path) -> None:
    """With speech_dir the talkers are those recordings: here every utterance is a 1 kHz tone,
    so the noise added to silence-free music is a 1 kHz tone plus pink noise."""
    for index in range(3):
        save_audio(tmp_path / f"utterance{index}.wav", sine(1000.0, 0.5 + 0.2 * index), SAMPLE_RATE)
    audio = sine(300.0, 2.0)
    noisy, params = degrade(
        audio, SAMPLE_RATE, "noise", np.random.default_rng(0), "field", speech_dir=str(tmp_path)
    )
    added = noisy.astype(np.float64) - audio
    spectrum = np.abs(np.fft.rfft(added)) ** 2
    frequencies = np.fft.rfftfreq(added.size, 1 / SAMPLE_RATE)
    near_tone = (frequencies > 980) & (frequencies < 1020)
    assert spectrum[near_tone].sum() / spectrum.sum() > 1 - params["pink_share"] - 0.1


def test_speech_dir_is_checked_before_any_work(tmp_path) -> None:
    save_audio(tmp_path / "song.wav", melody(1, 6.0), SAMPLE_RATE)
    with pytest.raises(ValueError, match="only the field suite"):
        make_queries(str(tmp_path), str(tmp_path / "q"), speech_dir=str(tmp_path), workers=1)
    with pytest.raises(ValueError, match="speech_dir: .*nowhere: not a folder"):
        make_queries(
            str(tmp_path), str(tmp_path / "q"), suite="field", speech_dir=str(tmp_path / "nowhere")
        )


def test_field_humming_is_sung_by_the_independent_singer() -> None:
    tune = melody(5, 4.0, note_s=0.5)
    sung, params = degrade(tune, SAMPLE_RATE, HUMMING, np.random.default_rng(0), "field")
    assert sung.shape == tune.shape and params["notes"] >= 4
    assert 45 - 12 <= params["centre_midi"] <= 67 + 12
    assert not np.allclose(sung, tune)
