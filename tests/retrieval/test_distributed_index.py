"""acr.retrieval.distributed: ``acr index --trainer.devices N`` extracts as a Lightning predict,
each rank a share of the catalog, and writes the index a one-process build writes; shards a
killed build left are added, not extracted again."""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from acr.audio import save_audio
from acr.data.catalogs import read_catalog
from acr.data.manifests import write_table
from acr.retrieval.build import build_index, create_engines
from acr.retrieval.devices import TrainerSettings
from acr.retrieval.distributed import SHARD_FOLDER, Shards, predict_shards
from acr.retrieval.embedding import EmbeddingSettings
from acr.retrieval.fingerprint.engine import FingerprintSettings
from acr.retrieval.melody import MelodySettings
from acr.retrieval.prediction import create_trainer
from acr.retrieval.recognizer import Recognizer
from acr.retrieval.store import IndexState, load_engines
from acr.synth import synthesize_track

RATE = 16000
ONE_CPU = TrainerSettings(devices=1, accelerator="cpu")
DDP = ["--trainer.devices", "2", "--trainer.accelerator", "cpu", "--trainer.strategy", "ddp"]


@pytest.fixture(scope="module")
def catalog(song_folder) -> Path:
    """Five 6-s songs, a corrupt file and a silent one (seven entries: an odd share)."""
    root = song_folder(5, 6.0, RATE)
    (root / "broken.mp3").write_bytes(b"ID3" + b"\x00garbage" * 50)
    save_audio(root / "silence.wav", np.zeros(RATE * 3, np.float32), RATE)
    return root


@pytest.fixture(scope="module")
def checkpoint(tiny_run: Path) -> str:
    return str(tiny_run / "checkpoints" / "last.ckpt")


@pytest.fixture(scope="module")
def one_process(catalog: Path, checkpoint: str, tmp_path_factory) -> Path:
    """The hybrid index of the catalog, built in one process."""
    index = tmp_path_factory.mktemp("one") / "index"
    build_index(catalog, index, "hybrid", checkpoint, workers=1)
    return index


def segment_files(index: Path) -> dict[str, bytes]:
    return {
        str(path.relative_to(index)): path.read_bytes()
        for path in sorted(index.glob("segment-*/**/*"))
        if path.is_file()
    }


def similarities(index: Path, probe: np.ndarray) -> np.ndarray:
    """Cosine similarity of every probe vector to every window of the index, by label."""
    windows = load_engines(index)["embedding"].index
    labels, found = windows.search(probe, len(windows))
    table = np.zeros((len(probe), len(windows)), np.float32)
    np.put_along_axis(table, labels, found, axis=1)
    return table


def test_one_device_predict_writes_the_same_bytes_as_one_process(
    catalog: Path, checkpoint: str, one_process: Path, tmp_path: Path
) -> None:
    index = tmp_path / "index"
    summary = build_index(catalog, index, "hybrid", checkpoint, workers=1, trainer=ONE_CPU)
    assert (summary.tracks, summary.skipped) == (5, 2)
    assert segment_files(index) == segment_files(one_process)
    skipped = pd.read_csv(index / "skipped.csv")
    assert skipped.equals(pd.read_csv(one_process / "skipped.csv"))
    reasons = dict(zip(skipped["track_id"], skipped["reason"]))
    assert "cannot decode" in reasons["broken"] and "silent" in reasons["silence"]
    assert not (index / SHARD_FOLDER).exists()


@pytest.mark.slow  # two processes that each load Lightning and the model
def test_two_ddp_processes_build_the_index_of_one_process(
    catalog: Path, checkpoint: str, one_process: Path, tmp_path: Path
) -> None:
    """What Lightning's launcher does on a GPU node, on two CPU processes (gloo): the second
    rank runs the same command line; it extracts its share and writes no index."""
    done = subprocess.run(
        [sys.executable, "-m", "acr", "index", "--catalog", str(catalog), "--output", "ddp",
         "--engine", "hybrid", "--checkpoint", checkpoint, "--workers", "1", *DDP],
        cwd=tmp_path, capture_output=True, text=True, timeout=300,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr[-3000:]
    assert done.stdout.count("index ddp: engines fingerprint+embedding+melody") == 1
    index = tmp_path / "ddp"
    assert not (index / SHARD_FOLDER).exists()
    state, expected = IndexState.read(index), IndexState.read(one_process)
    assert state.complete and (state.tracks, state.skipped, state.items) == (
        expected.tracks, expected.skipped, expected.items)  # fmt: skip
    assert pd.read_csv(index / "skipped.csv").equals(pd.read_csv(one_process / "skipped.csv"))
    # Fingerprints, melody and window start times are the same bytes; the window vectors are
    # the same up to the float sums of a rank's thread count.
    ddp, one = segment_files(index), segment_files(one_process)
    assert ddp.keys() == one.keys()
    differing = [name for name in one if ddp[name] != one[name]]
    assert differing in ([], ["segment-000001/embedding/hnsw/hnsw.bin"])
    engine = load_engines(one_process)["embedding"]
    songs = [synthesize_track(seed, 6.0, RATE) for seed in (0, 3)]
    probe = np.concatenate([engine.embed_track(song).vectors for song in songs])
    expected_similarities = similarities(one_process, probe)
    np.testing.assert_allclose(similarities(index, probe), expected_similarities, atol=1e-4)
    excerpt = synthesize_track(3, 6.0, RATE)[RATE : 4 * RATE]
    answers = [Recognizer.load(i).recognize(excerpt, RATE) for i in (index, one_process)]
    assert [m.track_id for m in answers[0].matches] == [m.track_id for m in answers[1].matches]
    assert answers[0].matches[0].track_id == "song3"


def test_resume_adds_the_shards_a_killed_build_left_without_extracting_them(
    catalog: Path, checkpoint: str, one_process: Path, tmp_path: Path
) -> None:
    """What a kill during extraction leaves: the index of the first tracks and shards of two
    more. Their audio then turns silent: extracted again, they would be skipped."""
    folder = shutil.copytree(catalog, tmp_path / "catalog")
    tracks = read_catalog(folder)
    write_table(tracks.head(3), tmp_path / "first_three.csv")
    build_index(tmp_path / "first_three.csv", tmp_path / "index", "hybrid", checkpoint,
                workers=1, trainer=ONE_CPU)  # fmt: skip
    settings = {"fingerprint": FingerprintSettings(), "melody": MelodySettings(),
                "embedding": EmbeddingSettings(device="cpu")}  # fmt: skip
    engines = create_engines(["fingerprint", "embedding", "melody"], checkpoint, settings)
    shards = Shards(tmp_path / "index")
    jobs = list(zip(tracks["track_id"], tracks["path"]))[3:5]  # song1, song2
    predict_shards(create_trainer(ONE_CPU), engines, jobs, 1, 1, shards)
    assert sorted(shards.track_ids()) == ["song1", "song2"] and len(shards.files()) == 2
    for _, path in jobs:
        save_audio(path, np.zeros(RATE * 6, np.float32), RATE)
    resumed = build_index(folder, tmp_path / "index", "hybrid", checkpoint, resume=True,
                          workers=1, trainer=ONE_CPU)  # fmt: skip
    expected = IndexState.read(one_process)
    assert (resumed.tracks, resumed.skipped, resumed.items) == (
        expected.tracks, expected.skipped, expected.items)  # fmt: skip
    assert not shards.folder.exists()
    excerpt = synthesize_track(2, 6.0, RATE)[RATE : 4 * RATE]
    recognition = Recognizer.load(tmp_path / "index").recognize(excerpt, RATE)
    assert recognition.matches[0].track_id == "song2"
