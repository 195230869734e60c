"""Look-alikes of published data sets, written by code: FMA and MTG-Jamendo layouts.

Shared by the DataModule tests (tests/datamodules/), the MERT adapter test and the data CLI tests;
conftest.py writes each look-alike once per session (fma_root, jamendo_root).
"""

from pathlib import Path

import numpy as np
import pandas as pd
import soundfile

from acr.synth import compose_song, render_song

SAMPLE_RATE = 22050  # FMA ships 44.1 kHz stereo; half the rate keeps resampling cheap in tests
DURATION_S = 6.0

# track id, set/subset, set/split, track/genre_top, artist/id: ids from the real fma_small.
FMA_TRACKS = [
    (2, "small", "training", "Hip-Hop", 1),
    (5, "small", "training", "Hip-Hop", 1),
    (140, "small", "training", "Folk", 2),
    (1482, "small", "training", "Rock", 3),  # truncated mp3
    (2096, "small", "validation", "Rock", 4),
    (10250, "small", "validation", "Folk", 5),
    (10666, "small", "test", "Folk", 6),
    (99134, "small", "test", "Hip-Hop", 7),  # no audio, as published
    (3, "medium", "training", "Rock", 1),  # not in fma_small
    (20, "large", "validation", None, 8),  # no genre_top, as in large
]

MTG_HEADER = "TRACK_ID\tARTIST_ID\tALBUM_ID\tPATH\tDURATION\tTAGS"
# Rows as published: five fixed fields, then one tag per field (listed alphabetically).
MTG_SPLIT_FILES = {
    "train": [
        "track_0000214\tartist_000014\talbum_000031\t14/214.mp3\t6.0\tgenre---pop\tgenre---rock",
        "track_0000215\tartist_000014\talbum_000031\t15/215.mp3\t6.0\tgenre---rock"
        "\tinstrument---piano\tmood/theme---happy",
        "track_0000300\tartist_000020\talbum_000040\t00/300.mp3\t6.0\tgenre---electronic",
        "track_0000999\tartist_000020\talbum_000040\t99/999.mp3\t6.0\tgenre---electronic",
    ],
    "validation": [
        "track_0000773\tartist_000104\talbum_000126\t73/773.mp3\t6.0\tgenre---electronic",
        "track_0000775\tartist_000104\talbum_000126\t75/775.mp3\t6.0\tgenre---easylistening"
        "\tgenre---electronic\tgenre---lounge\tmood/theme---calm",
        "track_0003346\tartist_000517\talbum_000521\t46/3346.mp3\t6.0\tgenre---pop"
        "\tmood/theme---calm\tmood/theme---melodic",
    ],
    "test": [
        "track_0001729\tartist_000264\talbum_000252\t29/1729.mp3\t6.0\tgenre---pop\tgenre---poprock",
    ],
}
MTG_MISSING = "99/999.mp3"  # listed, never downloaded
MTG_LOW_QUALITY_ONLY = "73/773.mp3"  # only the audio-low download's 73/773.low.mp3 exists


def write_fma(root: Path) -> Path:
    """fma_small/NNN/NNNNNN.mp3 and fma_metadata/tracks.csv with FMA's two-level header."""
    columns = pd.MultiIndex.from_tuples(
        [
            ("album", "id"),
            ("album", "title"),
            ("artist", "id"),
            ("artist", "name"),
            ("set", "split"),
            ("set", "subset"),
            ("track", "duration"),
            ("track", "genre_top"),
            ("track", "title"),
        ]
    )
    rows = [
        [track_id, f"Album {track_id}", artist, f"Artist {artist}", split, subset, 30, genre, "t"]
        for track_id, subset, split, genre, artist in FMA_TRACKS
    ]
    metadata = pd.DataFrame(rows, index=pd.Index([t[0] for t in FMA_TRACKS], name="track_id"))
    metadata.columns = columns
    (root / "fma_metadata").mkdir(parents=True)
    metadata.to_csv(root / "fma_metadata" / "tracks.csv")
    (root / "fma_medium").mkdir()
    for seed, (track_id, subset, *_) in enumerate(FMA_TRACKS):
        if subset != "small":
            continue
        path = root / "fma_small" / f"{track_id:06d}"[:3] / f"{track_id:06d}.mp3"
        path.parent.mkdir(parents=True, exist_ok=True)
        song = render_song(compose_song(seed, DURATION_S), SAMPLE_RATE)
        soundfile.write(path, np.stack([song, 0.9 * song], axis=1), SAMPLE_RATE)
    truncated = root / "fma_small" / "001" / "001482.mp3"
    truncated.write_bytes(truncated.read_bytes()[: truncated.stat().st_size * 2 // 5])
    (root / "fma_small" / "099" / "099134.mp3").write_bytes(b"ID3\x03\x00\x00\x00\x00\x00\x00")
    return root


def write_mtg_jamendo(root: Path) -> Path:
    """NN/ID.mp3 audio and splits/split-0/autotagging-{train,validation,test}.tsv."""
    split_dir = root / "splits" / "split-0"
    split_dir.mkdir(parents=True)
    rows = [row for part_rows in MTG_SPLIT_FILES.values() for row in part_rows]
    for seed, row in enumerate(rows):
        relative = row.split("\t")[3]
        if relative == MTG_MISSING:
            continue
        if relative == MTG_LOW_QUALITY_ONLY:
            relative = relative.replace(".mp3", ".low.mp3")
        path = root / relative
        path.parent.mkdir(parents=True, exist_ok=True)
        soundfile.write(path, render_song(compose_song(seed, DURATION_S), SAMPLE_RATE), SAMPLE_RATE)
    for part, rows in MTG_SPLIT_FILES.items():
        (split_dir / f"autotagging-{part}.tsv").write_text("\n".join([MTG_HEADER, *rows]) + "\n")
    return root


# CatalogDataModule settings small enough for a test: 2 queried tracks, 2 steps of 4 pairs.
TINY_CATALOG = dict(
    val_query_tracks=2,
    query_lengths_s=(1.0, 2.0),
    query_degradations=("clean", "noise"),
    batch_size=4,
    steps_per_epoch=2,
    num_workers=0,
    query_workers=1,
    probe_workers=2,
)
TINY_ENCODER = {"n_mels": 32, "channels": 16, "se_channels": 8, "attention_channels": 8}


def fit_two_steps(
    config: str, run_dir: str, data: dict[str, object], encoder: dict[str, object] = TINY_ENCODER
):
    """Two training steps from a shipped config with a tiny encoder and a CSV logger (no W&B
    run in a test); returns the LightningCLI."""
    from acr.cli import main

    def value(setting: object) -> str:
        return str(list(setting)) if isinstance(setting, tuple) else str(setting)

    return main(
        [
            "fit",
            "--config",
            config,
            "--trainer.max_steps=2",
            "--trainer.accelerator=cpu",
            "--trainer.logger=lightning.pytorch.loggers.CSVLogger",
            f"--trainer.logger.save_dir={run_dir}",
            *(f"--data.init_args.{key}={value(setting)}" for key, setting in data.items()),
            *(f"--model.init_args.encoder.init_args.{k}={v}" for k, v in encoder.items()),
        ]
    )
