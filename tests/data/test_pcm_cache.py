"""Decoded-audio cache: same samples as decoding, resumable, robust to bad and changed files."""

import os
import time
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from acr.audio import load_audio
from acr.data.pcm_cache import (
    FULL_SCALE,
    READ_PATH,
    cache_tracks,
    pcm_path,
    read_segment,
    with_read_paths,
)

RATE = 16000


def _quieter(seed: int, audio: np.ndarray) -> np.ndarray:
    return 0.8 * audio


def _quieter_stereo(seed: int, audio: np.ndarray) -> np.ndarray:
    return np.stack([0.8 * audio, 0.4 * audio], axis=1)


@pytest.fixture(scope="module")
def sources(tmp_path_factory: pytest.TempPathFactory, write_song) -> pd.DataFrame:
    """An mp3 and an ogg at 44.1 kHz stereo, a wav at the model's rate, and a corrupt file."""
    root = tmp_path_factory.mktemp("sources")
    rows = []
    for number, (name, rate, edit) in enumerate(
        [
            ("a.mp3", 44100, _quieter_stereo),
            ("b.ogg", 44100, _quieter_stereo),
            ("c.wav", RATE, _quieter),
        ]
    ):
        write_song(root / name, number, 5.0, rate, edit)
        rows.append({"track_id": name.split(".")[0], "path": str(root / name)})
    (root / "broken.mp3").write_bytes(b"ID3not an mp3 at all" * 10)
    rows.append({"track_id": "broken", "path": str(root / "broken.mp3")})
    return pd.DataFrame(rows)


@pytest.mark.slow  # a spawned pool of 2 decodes 44.1-kHz mp3 and ogg
def test_cached_segments_equal_decoded_ones(sources: pd.DataFrame, tmp_path: Path) -> None:
    with pytest.warns(UserWarning, match="1 track"):
        cache_tracks(sources, tmp_path, RATE, workers=2)
    cached = with_read_paths(sources, tmp_path, RATE).set_index("track_id")
    assert cached.loc["broken", READ_PATH] == cached.loc["broken", "path"]  # read from its file
    for track_id in ("a", "b", "c"):
        path = cached.loc[track_id, READ_PATH]
        assert path.endswith(".pcm16.npy")
        decoded = load_audio(cached.loc[track_id, "path"], RATE)
        np.testing.assert_allclose(read_segment(path, RATE), decoded, atol=1 / FULL_SCALE)
        segment = read_segment(path, RATE, 1.25, 0.5)
        assert len(segment) == RATE // 2
        start = int(1.25 * RATE)
        np.testing.assert_allclose(segment, decoded[start : start + RATE // 2], atol=1 / FULL_SCALE)


def test_a_second_build_decodes_only_what_is_missing(sources: pd.DataFrame, tmp_path: Path) -> None:
    good = sources[sources["track_id"] != "broken"]
    cache_tracks(good, tmp_path, RATE)
    paths = [pcm_path(tmp_path, t, p, RATE) for t, p in zip(good["track_id"], good["path"])]
    written = {path: path.stat().st_mtime_ns for path in paths}
    paths[1].unlink()  # as if the build had been killed before this track
    cache_tracks(good, tmp_path, RATE)
    assert paths[0].stat().st_mtime_ns == written[paths[0]]
    assert paths[1].is_file()
    assert not list(paths[1].parent.glob("*.partial"))


def test_a_changed_source_is_decoded_again(write_song, tmp_path: Path) -> None:
    source = tmp_path / "song.wav"
    write_song(source, 0, 2.0, RATE)
    tracks = pd.DataFrame({"track_id": ["song"], "path": [str(source)]})
    cache_tracks(tracks, tmp_path, RATE)
    before = pcm_path(tmp_path, "song", source, RATE)
    time.sleep(0.01)
    write_song(source, 1, 3.0, RATE)
    os.utime(source)
    assert with_read_paths(tracks, tmp_path, RATE)[READ_PATH][0] == str(source)  # stale: unused
    cache_tracks(tracks, tmp_path, RATE)
    after = with_read_paths(tracks, tmp_path, RATE)[READ_PATH][0]
    assert after != str(before) and len(read_segment(after, RATE)) == 3 * RATE
