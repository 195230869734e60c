"""acr.data.mixes (acr data make-mixes): the truth table matches the audio (clean excerpts
are the track's samples, speed-changed ones the track played at the truth's speed), rows tile
each recording, seeds reproduce the bytes, the voice, out-of-catalog music, skipped tracks,
and the errors of bad input."""

import shutil
from fractions import Fraction
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from acr.audio import load_audio, save_audio
from acr.augment.effects import MAX_SPEED_DENOMINATOR, change_speed
from acr.cli import main
from acr.data.manifests import ManifestError
from acr.data.mixes import KINDS, TRUTH_COLUMNS, TRUTH_FILE, make_mixes
from acr.files import SKIPPED_FILE

RATE = 16000
SONGS = (21, 22, 23)
# seed 1 of these settings holds clean, noisy, sped-up/slowed, talked-over excerpts, speech,
# out-of-catalog music and silence
SETTINGS = dict(
    recordings=2,
    duration_s=60.0,
    max_excerpt_s=15.0,
    degradations=("clean", "noise"),
    speed_change_share=0.5,
    talk_over_share=0.3,
    speech="babble",
    seed=1,
    workers=1,
)
QUANTUM = 2 / 32768  # two steps of 16-bit PCM


@pytest.fixture(scope="module")
def catalog(song_folder) -> Path:
    return song_folder(seeds=SONGS, duration_s=30.0, sample_rate=RATE)


@pytest.fixture(scope="module")
def mixes(catalog: Path, tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, pd.DataFrame]:
    output = tmp_path_factory.mktemp("mixes")
    make_mixes(str(catalog), str(output), **SETTINGS)
    return output, pd.read_csv(output / TRUTH_FILE, dtype={"track_id": str})


def excerpts(truth: pd.DataFrame, speed_changed: bool) -> pd.DataFrame:
    """Catalog rows with no degradation or talk-over, with or without a speed change."""
    plain = truth[(truth["kind"] == "catalog") & (truth["degradation"] == "clean")]
    plain = plain[~plain["talk_over"].astype(bool)]
    changed = (plain["speed_factor"] - 1).abs() > 1e-9
    rows = plain[changed if speed_changed else ~changed]
    assert len(rows), "the fixture's seed should hold such an excerpt"
    return rows


def full_level(row: pd.Series) -> tuple[int, int]:
    """The samples of a row where its piece plays alone (between the crossfade halves)."""
    start = round((row["start_s"] + row["crossfade_in_s"] / 2) * RATE)
    return start, round((row["end_s"] - row["crossfade_out_s"] / 2) * RATE)


def test_rows_tile_each_recording_and_name_catalog_tracks(mixes, catalog: Path) -> None:
    output, truth = mixes
    assert list(truth.columns[: len(TRUTH_COLUMNS)]) == list(TRUTH_COLUMNS)
    assert set(truth["kind"]) == set(KINDS)
    for recording, rows in truth.groupby("recording"):
        audio = load_audio(output / recording)
        assert len(audio) == SETTINGS["duration_s"] * RATE
        assert rows["start_s"].iloc[0] == 0 and rows["end_s"].iloc[-1] == SETTINGS["duration_s"]
        assert np.array_equal(rows["start_s"].to_numpy()[1:], rows["end_s"].to_numpy()[:-1])
    excerpt_rows = truth[truth["kind"] == "catalog"]
    assert set(excerpt_rows["track_id"]) <= {f"song{seed}" for seed in SONGS}
    lengths = excerpt_rows["end_s"] - excerpt_rows["start_s"]
    assert lengths.min() >= 5.0 and lengths.max() <= 15.0
    assert (excerpt_rows["speed_factor"] - 1).abs().max() <= 0.08
    played = (excerpt_rows["reference_end_s"] - excerpt_rows["reference_start_s"]) / lengths
    assert np.allclose(played, excerpt_rows["speed_factor"])
    others = truth[truth["kind"] != "catalog"]
    assert others["track_id"].isna().all() and others["reference_start_s"].isna().all()
    assert set(truth.loc[truth["kind"] == "speech", "source"]) == {"babble"}
    assert all(
        source.startswith("synth:") for source in truth.loc[truth["kind"] == "music", "source"]
    )
    silence = truth[truth["kind"] == "silence"].iloc[0]
    start, stop = full_level(silence)
    assert not load_audio(output / silence["recording"])[start:stop].any()


def test_clean_excerpts_are_the_tracks_samples_at_the_reference_time(mixes, catalog) -> None:
    output, truth = mixes
    for _, row in excerpts(truth, speed_changed=False).iterrows():
        start, stop = full_level(row)
        heard = load_audio(output / row["recording"])[start:stop]
        track = load_audio(catalog / f"{row['track_id']}.wav")
        first = round((row["reference_start_s"] + row["crossfade_in_s"] / 2) * RATE)
        np.testing.assert_allclose(heard, track[first : first + len(heard)], atol=QUANTUM)


def test_speed_changed_excerpts_play_the_reference_at_the_truth_speed(mixes, catalog) -> None:
    """The excerpt is the track from reference_start_s played at speed_factor (a turntable:
    the resampler of acr.augment.effects.change_speed), so its length is the reference
    length / speed."""
    output, truth = mixes
    for _, row in excerpts(truth, speed_changed=True).iterrows():
        speed = Fraction(row["speed_factor"]).limit_denominator(MAX_SPEED_DENOMINATOR)
        head = round(row["crossfade_in_s"] / 2 * RATE)
        start, stop = full_level(row)
        heard = load_audio(output / row["recording"])[start:stop]
        track = load_audio(catalog / f"{row['track_id']}.wav")
        # the track sample heard at the excerpt's first (fading-in) sample, half a crossfade
        # before start_s
        first = round(row["reference_start_s"] * RATE - head * float(speed))
        blocks = min(first // speed.numerator, 20)  # context before, on the resampling grid
        span = track[first - blocks * speed.numerator :]
        expected = change_speed(span, RATE, float(speed))
        offset = blocks * speed.denominator + 2 * head  # where the full-level stretch starts
        expected = expected[offset : offset + len(heard)]
        assert len(expected) == len(heard)
        np.testing.assert_allclose(heard, expected, atol=QUANTUM)
        # and not the track at its own speed
        assert np.abs(heard - track[first : first + len(heard)]).max() > 0.05


def test_the_same_seed_writes_the_same_bytes(catalog: Path, tmp_path: Path) -> None:
    settings = {**SETTINGS, "recordings": 1, "duration_s": 30.0}
    for name in ("a", "b"):
        make_mixes(str(catalog), str(tmp_path / name), **settings)
    make_mixes(str(catalog), str(tmp_path / "c"), **{**settings, "seed": 2})
    for file in ("mix_000.wav", TRUTH_FILE):
        assert (tmp_path / "a" / file).read_bytes() == (tmp_path / "b" / file).read_bytes()
    assert (tmp_path / "a" / "mix_000.wav").read_bytes() != (
        tmp_path / "c" / "mix_000.wav"
    ).read_bytes()


def test_babble_is_the_voice_when_espeak_ng_is_absent(
    catalog: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("PATH", str(tmp_path))  # no espeak-ng here
    settings = {**SETTINGS, "recordings": 1, "duration_s": 30.0, "speech_share": 1.0,
                "talk_over_share": 1.0, "speech": "auto"}  # fmt: skip
    truth = make_mixes(str(catalog), str(tmp_path / "auto"), **settings)
    assert set(truth.loc[truth["kind"] == "speech", "source"]) == {"babble"}
    talked_over = truth[truth["talk_over"]]
    assert len(talked_over) and set(talked_over["source"]) == {"babble"}
    with pytest.raises(ValueError, match="speech: espeak-ng is not installed"):
        make_mixes(str(catalog), str(tmp_path / "espeak"), **{**settings, "speech": "espeak-ng"})


@pytest.mark.skipif(shutil.which("espeak-ng") is None, reason="espeak-ng is not installed")
def test_espeak_ng_is_the_voice_when_installed(catalog: Path, tmp_path: Path) -> None:
    settings = {**SETTINGS, "recordings": 1, "duration_s": 30.0, "speech_share": 1.0,
                "speech": "auto"}  # fmt: skip
    truth = make_mixes(str(catalog), str(tmp_path / "mix"), **settings)
    speech = truth[truth["kind"] == "speech"]
    assert len(speech) and set(speech["source"]) == {"espeak-ng"}
    row = speech.iloc[0]
    start, stop = full_level(row)
    assert np.abs(load_audio(tmp_path / "mix" / row["recording"])[start:stop]).max() > 0.01


def test_out_of_catalog_music_plays_the_held_out_tracks(
    catalog: Path, song_folder, tmp_path: Path
) -> None:
    held_out = song_folder(seeds=(31, 32), duration_s=20.0, sample_rate=RATE)
    settings = {**SETTINGS, "recordings": 1, "speech_share": 0.0, "silence_share": 0.0}
    truth = make_mixes(
        str(catalog), str(tmp_path / "mix"), out_of_catalog=str(held_out), **settings
    )
    music = truth[truth["kind"] == "music"]
    assert len(music) and set(music["source"]) <= {"song31", "song32"}
    # the catalog itself, or a table naming a catalog file under another id, is refused
    with pytest.raises(ManifestError, match="out_of_catalog shares track_id 'song21'"):
        make_mixes(str(catalog), str(tmp_path / "x"), out_of_catalog=str(catalog), **settings)
    table = tmp_path / "held_out.csv"
    pd.DataFrame({"track_id": ["other"], "path": [str(catalog / "song22.wav")]}).to_csv(table)
    with pytest.raises(
        ManifestError, match=r"held_out.csv: out_of_catalog shares the file .*song22"
    ):
        make_mixes(str(catalog), str(tmp_path / "x"), out_of_catalog=str(table), **settings)


def test_unreadable_and_short_tracks_are_listed_in_skipped(song_folder, tmp_path: Path) -> None:
    root = song_folder(seeds=(41,), duration_s=20.0, sample_rate=RATE)
    (root / "broken.wav").write_bytes(b"RIFF not really a wave file")
    save_audio(root / "short.wav", np.zeros(RATE * 2, dtype=np.float32) + 0.1, RATE)
    settings = {**SETTINGS, "recordings": 1, "duration_s": 30.0}
    truth = make_mixes(str(root), str(tmp_path / "mix"), **settings)
    skipped = pd.read_csv(tmp_path / "mix" / SKIPPED_FILE)
    assert sorted(Path(path).name for path in skipped["path"]) == ["broken.wav", "short.wav"]
    assert "shorter than" in skipped.loc[skipped["track_id"] == "short", "reason"].item()
    assert set(truth.loc[truth["kind"] == "catalog", "track_id"]) == {"song41"}


def test_bad_input_is_a_clear_error(catalog: Path, tmp_path: Path) -> None:
    output = str(tmp_path / "mix")
    with pytest.raises(ManifestError, match="missing: catalog does not exist"):
        make_mixes(str(tmp_path / "missing"), output)
    empty = tmp_path / "empty.csv"
    empty.write_text("track_id,path\n")
    with pytest.raises(ManifestError, match="empty.csv: catalog holds no audio files"):
        make_mixes(str(empty), output)
    with pytest.raises(ValueError, match=r"duration_s \(4 s\) is shorter than min_excerpt_s"):
        make_mixes(str(catalog), output, duration_s=4.0)
    with pytest.raises(ValueError, match=r"degradations: \['speed'\] change an excerpt's length"):
        make_mixes(str(catalog), output, degradations=("clean", "speed"))
    with pytest.raises(ValueError, match="degradations: unknown"):
        make_mixes(str(catalog), output, degradations=("vinyl",))
    with pytest.raises(ManifestError, match="catalog: no usable track of at least"):
        make_mixes(str(catalog), output, min_excerpt_s=40.0, max_excerpt_s=50.0)


def test_cli_writes_the_recordings_and_truth(catalog: Path, tmp_path: Path, capsys) -> None:
    output = tmp_path / "mix"
    status = main(["data", "make-mixes", "--catalog", str(catalog), "--output", str(output),
                   "--recordings", "1", "--duration_s", "20", "--sample_rate", "8000",
                   "--workers", "1"])  # fmt: skip
    assert status == 0
    assert "1 recordings" in capsys.readouterr().out
    assert len(load_audio(output / "mix_000.wav")) == 20 * 8000
    assert main(["data", "make-mixes", "--catalog", str(catalog), "--output", str(output),
                 "--max_speed_change", "0.7"]) == 1  # fmt: skip
    assert "max_speed_change must be in" in capsys.readouterr().err
