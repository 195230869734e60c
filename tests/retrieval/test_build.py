"""acr.retrieval.build: skipped files, snapshots, locks and resume after a kill."""

import os
import stat
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from acr.audio import save_audio
from acr.data.catalogs import read_catalog
from acr.data.manifests import write_table
from acr.retrieval.build import IndexDirectoryError, build_index, build_lock
from acr.retrieval.recognizer import Recognizer
from acr.retrieval.store import IndexState, load_engines
from acr.synth import synthesize_track

SAMPLE_RATE = 22050  # not the engines' rate: indexing resamples


def _first_in_stereo(seed: int, audio: np.ndarray) -> np.ndarray:
    return np.stack([audio, 0.5 * audio], axis=1) if seed == 0 else audio


@pytest.fixture(scope="module")
def catalog(song_folder) -> Path:
    """Six 12-s songs in nested folders (one stereo), one corrupt file, one silent file."""
    root = song_folder(6, 12.0, SAMPLE_RATE, "flac", nested=2, edit=_first_in_stereo)
    (root / "broken.mp3").write_bytes(b"ID3" + b"\x00garbage" * 50)
    save_audio(root / "silence.wav", np.zeros(SAMPLE_RATE * 5, np.float32), SAMPLE_RATE)
    return root


def test_build_skips_bad_files_and_recognises_an_excerpt(catalog: Path, tmp_path: Path) -> None:
    summary = build_index(catalog, tmp_path / "index", "fingerprint", workers=1, save_every=3)
    assert summary.tracks == 6 and summary.skipped == 2
    skipped = pd.read_csv(tmp_path / "index" / "skipped.csv")
    reasons = dict(zip(skipped["track_id"], skipped["reason"]))
    assert "cannot decode" in reasons["broken"] and "silent" in reasons["silence"]
    umask = os.umask(0)
    os.umask(umask)
    for written in ("skipped.csv", "index.json"):  # readable by whoever may read a new file
        mode = stat.S_IMODE((tmp_path / "index" / written).stat().st_mode)
        assert mode == 0o666 & ~umask, written
    state = IndexState.read(tmp_path / "index")
    assert state.complete and state.acr_version and state.engines["fingerprint"]
    assert state.audio_s == pytest.approx(72.0, abs=0.1)
    excerpt = synthesize_track(3, 12.0, SAMPLE_RATE)[4 * SAMPLE_RATE : 7 * SAMPLE_RATE]
    recognition = Recognizer.load(tmp_path / "index").recognize(excerpt, SAMPLE_RATE)
    assert recognition.matches[0].track_id == "album1/song3"
    assert recognition.matches[0].offset_s == pytest.approx(4.0, abs=0.1)


def test_existing_index_needs_resume(catalog: Path, tmp_path: Path) -> None:
    build_index(catalog, tmp_path / "index", "fingerprint", workers=1)
    with pytest.raises(IndexDirectoryError, match="--resume"):
        build_index(catalog, tmp_path / "index", "fingerprint", workers=1)
    with pytest.raises(IndexDirectoryError, match="needs --checkpoint"):
        build_index(catalog, tmp_path / "other", "hybrid", workers=1)


def test_a_second_build_of_the_same_directory_is_refused(catalog: Path, tmp_path: Path) -> None:
    """Found by the SIGKILL benchmark: killing a wrapper shell left the build running, and the
    --resume beside it raced it for the same snapshots."""
    with build_lock(tmp_path / "index"):
        message = f"being written by another acr process \\(pid {os.getpid()}\\)"
        with pytest.raises(IndexDirectoryError, match=message):
            build_index(catalog, tmp_path / "index", "fingerprint", resume=True, workers=1)
    summary = build_index(catalog, tmp_path / "index", "fingerprint", workers=1)  # lock released
    assert summary.tracks == 6


def test_resume_continues_a_partial_index_without_duplicates(catalog: Path, tmp_path: Path) -> None:
    complete = build_index(catalog, tmp_path / "complete", "fingerprint", workers=1)
    # What a kill after three tracks leaves: a consistent snapshot of those three.
    tracks = read_catalog(catalog)
    write_table(tracks.head(3), tmp_path / "first_three.csv")
    build_index(tmp_path / "first_three.csv", tmp_path / "partial", "fingerprint", workers=1)
    resumed = build_index(catalog, tmp_path / "partial", "fingerprint", resume=True, workers=1)
    assert (resumed.tracks, resumed.skipped, resumed.items) == (
        complete.tracks,
        complete.skipped,
        complete.items,
    )
    resumed_ids = load_engines(tmp_path / "partial")["fingerprint"].track_ids
    assert len(resumed_ids) == len(set(resumed_ids)) == 6
    complete_ids = load_engines(tmp_path / "complete")["fingerprint"].track_ids
    assert sorted(resumed_ids) == sorted(complete_ids)
    # Nothing left to do: a second resume adds nothing.
    again = build_index(catalog, tmp_path / "partial", "fingerprint", resume=True, workers=1)
    assert again.items == complete.items


def test_a_build_started_before_verification_resumes_without_spectrograms(
    catalog: Path, tmp_path: Path
) -> None:
    """index.json and the segments of a partial build from before verification name neither
    setting: resumed as it was (``verification_bands`` 0) it completes, and resumed with the
    spectrograms it is told which setting differs."""
    import json

    from acr.retrieval.fingerprint.engine import FingerprintSettings

    tracks = read_catalog(catalog)
    write_table(tracks.head(3), tmp_path / "first_three.csv")
    partial = tmp_path / "partial"
    before = FingerprintSettings(verification_bands=0)
    build_index(tmp_path / "first_three.csv", partial, "fingerprint", workers=1, fingerprint=before)
    for manifest in [partial / "index.json", *partial.glob("segment-*/fingerprint/*.json")]:
        recorded = json.loads(manifest.read_text())
        settings = (
            recorded["engines"]["fingerprint"] if "engines" in recorded else recorded["settings"]
        )
        del settings["verification_bands"], settings["verify_candidates"]
        manifest.write_text(json.dumps(recorded))
    with pytest.raises(IndexDirectoryError, match="fingerprint.verification_bands=0, not 30"):
        build_index(catalog, partial, "fingerprint", resume=True, workers=1)
    resumed = build_index(
        catalog, partial, "fingerprint", resume=True, workers=1, fingerprint=before
    )
    engine = load_engines(partial)["fingerprint"]
    assert resumed.tracks == len(engine.track_ids) == 6
    assert engine.settings.verification_bands == 0
    assert all(part.spectra is None for part in engine._parts)


@pytest.mark.slow
def test_sigkill_midway_then_resume(catalog: Path, tmp_path: Path) -> None:
    """The real thing: kill -9 the CLI after its first snapshot, then --resume."""
    import os
    import signal
    import subprocess
    import sys
    import time

    command = [
        sys.executable,
        "-m",
        "acr",
        "index",
        "--catalog",
        str(catalog),
        "--output",
        str(tmp_path / "killed"),
        "--workers",
        "1",
        "--save_every",
        "1",
    ]
    process = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.time() + 60
    while time.time() < deadline and process.poll() is None:
        if (tmp_path / "killed" / "index.json").is_file():
            break
        time.sleep(0.02)
    if process.poll() is None:
        os.kill(process.pid, signal.SIGKILL)
    process.wait()
    resumed = build_index(catalog, tmp_path / "killed", "fingerprint", resume=True, workers=1)
    complete = build_index(catalog, tmp_path / "complete", "fingerprint", workers=1)
    assert (resumed.tracks, resumed.skipped, resumed.items) == (
        complete.tracks,
        complete.skipped,
        complete.items,
    )


def test_resume_ignores_segments_a_kill_left_behind(catalog: Path, tmp_path: Path) -> None:
    """A kill between writing segment N and listing it in index.json leaves an orphan that
    a resumed build will want to write again under the same name."""
    tracks = read_catalog(catalog)
    write_table(tracks.head(2), tmp_path / "first_two.csv")
    build_index(tmp_path / "first_two.csv", tmp_path / "index", "fingerprint", workers=1)
    orphan = tmp_path / "index" / "segment-000002"
    (orphan / "fingerprint").mkdir(parents=True)
    (orphan / "fingerprint" / "partial.npy").write_bytes(b"half written")
    (tmp_path / "index" / ".segment-000003.999.tmp").mkdir()
    resumed = build_index(
        catalog, tmp_path / "index", "fingerprint", resume=True, workers=1, save_every=2
    )
    assert resumed.tracks == 6 and resumed.skipped == 2
    segments = sorted(p.name for p in (tmp_path / "index").iterdir() if "segment" in p.name)
    assert segments == [s.name for s in IndexState.read(tmp_path / "index").segments]
    assert len(segments) == 4  # the first two tracks, then 6 catalog entries 2 at a time


@pytest.mark.slow
def test_a_hybrid_index_of_tracks_read_in_spans_answers_as_one_of_whole_tracks(
    catalog: Path, tiny_run: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Every 12-s song made 'long': fingerprint, melody and embedding (windows cut from the
    file a batch at a time in the main process) give each engine the same answers."""
    from acr.audio import Resampled
    from acr.retrieval import extraction
    from acr.retrieval.embedding import EmbeddingEngine

    checkpoint = str(tiny_run / "checkpoints" / "last.ckpt")
    build_index(catalog, tmp_path / "whole", "hybrid", checkpoint, workers=1)
    monkeypatch.setattr(extraction, "LONG_TRACK_S", 5.0)
    handed, add = [], EmbeddingEngine.add

    def noting_what_it_gets(self, track_id, features):
        handed.append(type(features))
        return add(self, track_id, features)

    monkeypatch.setattr(EmbeddingEngine, "add", noting_what_it_gets)
    build_index(catalog, tmp_path / "spans", "hybrid", checkpoint, workers=1)
    assert handed == [Resampled] * 6
    whole, spans = (load_engines(tmp_path / name) for name in ("whole", "spans"))
    assert spans["embedding"].item_count == whole["embedding"].item_count > 100
    excerpt = synthesize_track(3, 12.0, 16000)[4 * 16000 : 7 * 16000]
    for name in ("fingerprint", "melody", "embedding"):
        rate = whole[name].sample_rate
        clip = excerpt if rate == 16000 else synthesize_track(3, 12.0, rate)[4 * rate : 7 * rate]
        expected, found = whole[name].search(clip, 3), spans[name].search(clip, 3)
        assert [m.track_id for m in found] == [m.track_id for m in expected], name
        assert [m.score for m in found] == pytest.approx([m.score for m in expected], rel=1e-4)
    assert whole["fingerprint"].search(synthesize_track(3, 12.0, 8000)[32000:56000])[0].track_id \
        == "album1/song3"  # fmt: skip
