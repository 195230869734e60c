"""BusinessDataModule on one synthetic export written as CSV, JSONL and a SQL dump."""

import csv
import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from fixtures_data import fit_two_steps
from fixtures_runs import recomputed, validation_report

from acr.audio import save_audio
from acr.data.manifests import ManifestError, bucket_columns, read_table
from acr.datamodules import BusinessDataModule

SAMPLE_RATE = 16000
DURATION_S = 4.0
COLUMNS = ("asset_id", "audio_file", "asset_role", "version_type", "original_id")
COLUMNS += ("artist_id", "genre", "title")
# Ten references by five artists, six queries of three of them, and seven unusable rows.
REFERENCES = [
    (100 + number, f"audio/ref{number}.wav", "catalog", "Original", None, (number + 1) // 2)
    for number in range(1, 11)
]
QUERIES = [
    (201, "clips/q1.wav", "probe", "LIVE", 101, 2.5),
    (202, "clips/q2.wav", "probe", "cover", 102, 3.7),
    (203, "clips/q3.wav", "probe", "hum", 103, 2.5),
    (204, "clips/q4.wav", "probe", "clip", 104, 1.5),
    (205, "clips/q5.wav", "probe", "remix", 101, 3.2),
]
BAD_ROWS = [  # (row, reason it is rejected for)
    ((111, "audio/gone.wav", "catalog", "original", None, 9), "missing_audio"),
    ((112, "audio/ref1.wav", "catalog", "karaoke", None, 9), "unknown_type"),
    ((113, "audio/ref1.wav", "demo", "original", None, 9), "unknown_role"),
    ((101, "audio/ref2.wav", "catalog", "original", None, 9), "duplicate_id"),
    ((206, "clips/q1.wav", "probe", "live", 999, 9), "unknown_reference"),
    ((207, "clips/q1.wav", "probe", "live", 111, 9), "unknown_reference"),
    ((208, "clips/broken.wav", "probe", "live", 101, 9), "unreadable_audio"),
]
ARTIST_1 = 'O\'Brien, "Jr"'
SETTINGS = dict(
    val_fraction=0.3,
    test_fraction=0.2,
    batch_size=4,
    steps_per_epoch=2,
    num_workers=0,
    query_workers=1,
    probe_workers=2,
)


def export_rows() -> list[dict]:
    """Typed rows (ints, None) as a database holds them; genres and titles need quoting."""
    rows = []
    for asset_id, path, role, kind, reference, artist in REFERENCES + [r for r, _ in BAD_ROWS]:
        title = "O'Brien's \"Blues\", live" if asset_id == 101 else f"Song {asset_id}"
        genre = "Rock & Pop" if artist % 2 else None
        artist = ARTIST_1 if artist == 1 else artist  # a group name that needs quoting
        rows.append(
            dict(zip(COLUMNS, (asset_id, path, role, kind, reference, artist, genre, title)))
        )
    for asset_id, path, role, kind, reference, _ in QUERIES:
        rows.append(dict(zip(COLUMNS, (asset_id, path, role, kind, reference, None, None, "q"))))
    rows[2]["version_type"] = None  # NULL: the mapping's `~: original`
    return rows


def write_audio(root: Path, write_song) -> None:
    references = {
        100 + number: write_song(root / f"audio/ref{number}.wav", number, DURATION_S, SAMPLE_RATE)
        for number in range(1, 11)
    }
    rng = np.random.default_rng(0)
    for _, path, _, _, reference, length_s in QUERIES:
        start = int(0.3 * SAMPLE_RATE)
        clip = references[reference][start : start + int(length_s * SAMPLE_RATE)]
        save_audio(root / path, clip + 0.01 * rng.standard_normal(len(clip)), SAMPLE_RATE)
    (root / "clips/broken.wav").write_bytes(b"RIFF\x00\x00\x00\x00WAVEnot audio")


def write_csv(path: Path, rows: list[dict]) -> Path:
    with path.open("w", newline="") as handle:
        writer = csv.DictWriter(handle, COLUMNS)
        writer.writeheader()
        writer.writerows(rows)
    return path


def write_jsonl(path: Path, rows: list[dict]) -> Path:
    path.write_text("".join(json.dumps(row) + "\n" for row in rows))
    return path


def write_sql(path: Path, rows: list[dict]) -> Path:
    """mysqldump's layout: comments, a CREATE TABLE, INSERTs of many rows, other statements."""

    def literal(value: object, doubled: bool) -> str:
        if value is None:
            return "NULL"
        if isinstance(value, int):
            return str(value)
        text = str(value).replace("\\", "\\\\")
        return "'" + text.replace("'", "''" if doubled else "\\'") + "'"

    names = ", ".join(f"`{column}`" for column in COLUMNS)
    statements = []
    for number, chunk in enumerate((rows[:9], rows[9:])):
        values = ",\n".join(
            "(" + ", ".join(literal(row[c], doubled=number == 0) for c in COLUMNS) + ")"
            for row in chunk
        )
        statements.append(f"INSERT INTO `assets` ({names}) VALUES\n{values};")
    path.write_text(
        "-- MySQL dump 10.13\n/*!40101 SET NAMES utf8mb4 */;\nDROP TABLE IF EXISTS `assets`;\n"
        "CREATE TABLE `assets` (`asset_id` int NOT NULL, `title` varchar(200) DEFAULT 'a;b',\n"
        "  PRIMARY KEY (`asset_id`)) ENGINE=InnoDB;\nLOCK TABLES `assets` WRITE;\n"
        + "\n".join(statements)
        + "\nUNLOCK TABLES;\n"
    )
    return path


@pytest.fixture(scope="module")
def mapping(shipped_config) -> str:
    """configs/business_mapping.yaml: the shipped mapping of the export's columns and values."""
    return shipped_config("business_mapping")


@pytest.fixture(scope="module")
def exports(tmp_path_factory: pytest.TempPathFactory, write_song) -> dict[str, Path]:
    root = tmp_path_factory.mktemp("export")
    write_audio(root, write_song)
    rows = export_rows()
    return {
        "csv": write_csv(root / "assets.csv", rows),
        "jsonl": write_jsonl(root / "assets.jsonl", rows),
        "sql": write_sql(root / "assets.sql", rows),
    }


@pytest.fixture(scope="module")
def prepared(
    exports: dict[str, Path], mapping: str, tmp_path_factory: pytest.TempPathFactory
) -> dict[str, BusinessDataModule]:
    modules = {}
    for name, export in exports.items():
        data_dir = str(tmp_path_factory.mktemp(f"data_{name}"))
        datamodule = BusinessDataModule(data_dir, str(export), mapping, **SETTINGS)
        with pytest.warns(UserWarning, match="rejected 7 of 22 export rows"):
            datamodule.prepare_data()
        datamodule.setup("fit")
        modules[name] = datamodule
    return modules


def test_csv_jsonl_and_sql_exports_give_the_same_manifests(
    prepared: dict[str, BusinessDataModule],
) -> None:
    for table in ("tracks.csv", "queries.csv", "rejected.csv"):
        csv_table = read_table(prepared["csv"].manifest_dir / table)
        for name in ("jsonl", "sql"):
            pd.testing.assert_frame_equal(
                read_table(prepared[name].manifest_dir / table), csv_table
            )
    tracks = prepared["sql"].tracks.set_index("track_id")
    assert sorted(tracks.index) == [str(100 + number) for number in range(1, 11)]
    assert tracks.loc["101", "genre"] == "Rock & Pop" and tracks.loc["103", "genre"] == "none"
    assert tracks.loc["101", "group"] == tracks.loc["102", "group"] == ARTIST_1
    assert set(tracks["type"]) == {"original"}  # "Original" and NULL both map to original


def test_rejected_rows_are_counted_by_reason(prepared: dict[str, BusinessDataModule]) -> None:
    rejected = read_table(prepared["csv"].manifest_dir / "rejected.csv")
    expected = pd.Series([reason for _, reason in BAD_ROWS]).value_counts()
    assert rejected["reason"].value_counts().sort_index().equals(expected.sort_index())
    by_row = rejected.set_index("row")
    assert by_row.loc[14, "detail"] == "row 1 has the same id"  # the 4th bad row repeats id 101
    assert by_row.loc[12, "detail"] == "type 'karaoke' is not in the mapping (values.type)"
    assert by_row.loc[11, "detail"] == "file does not exist"
    assert by_row.loc[16, "detail"] == "reference 111 is no usable reference row"  # no audio
    dropped = rejected.loc[rejected["reason"] != "duplicate_id", "track_id"].astype(str)
    assert not set(dropped) & set(prepared["csv"].tracks["track_id"])


def test_queries_get_hard_case_and_reference_label_buckets(
    prepared: dict[str, BusinessDataModule],
) -> None:
    datamodule = prepared["csv"]
    queries = datamodule.queries.set_index("query_id")
    assert bucket_columns(datamodule.queries) == ["length_s", "hard_case", "genre"]
    assert sorted(queries.index) == ["201", "202", "203", "204", "205"]
    assert (
        queries.loc["201", "hard_case"] == "live" and queries.loc["203", "hard_case"] == "humming"
    )
    assert queries.loc["202", "track_id"] == "102" and queries.loc["202", "genre"] == "Rock & Pop"
    # 2.5 s -> 2, 3.7 s -> 3, 1.5 s -> 1: length_s buckets of whole seconds
    assert queries["length_s"].to_dict() == {"201": 2, "202": 3, "203": 2, "204": 1, "205": 3}
    # Queried references (artists 1 and 2) are drawn into val first; no query is lost to train.
    splits = datamodule.tracks.set_index("track_id")["split"]
    assert set(splits[["101", "102", "103", "104"]]) == {"val"}
    assert set(datamodule.val_queries.index) == set(datamodule.queries.index)
    assert (datamodule.tracks.groupby("group")["split"].nunique() == 1).all()


def test_mapping_errors_name_the_file_and_key(
    exports: dict[str, Path], mapping: str, tmp_path: Path
) -> None:
    shipped = Path(mapping).read_text()

    def written(text: str) -> str:
        path = tmp_path / "mapping.yaml"
        path.write_text(text)
        return str(path)

    missing_column = written(shipped.replace("reference: original_id", "reference: orig_id"))
    datamodule = BusinessDataModule(str(tmp_path), str(exports["csv"]), missing_column)
    with pytest.raises(
        ManifestError, match=r"mapping.yaml: columns.reference: assets.csv has no column 'orig_id'"
    ):
        datamodule.prepare_data()
    cases = [
        (shipped.replace("group: artist_id", "grop: artist_id"), "columns.grop: unknown key"),
        ("colums: {}\n", "colums: unknown key"),
        ("columns:\n  track_id: asset_id\n", "columns.path: required"),
        (
            shipped.replace("probe: query", "probe: queries"),
            r"values.role.probe: 'queries' is not one of \('reference', 'query'\)",
        ),
        (shipped.replace("  genre: genre", "  path: genre"), "labels.path: the manifests already"),
    ]
    for text, message in cases:
        with pytest.raises(ManifestError, match="mapping.yaml: " + message):
            BusinessDataModule(str(tmp_path), str(exports["csv"]), written(text))


@pytest.mark.slow  # prepares a second export end to end (probe, split, queries)
def test_export_split_column_and_leaking_queries(
    exports: dict[str, Path], mapping: str, tmp_path: Path
) -> None:
    everything = export_rows()
    chosen = {101, 102, 103, 104, 201, 203}
    rows = [row for row in everything[:10] + everything[17:] if row["asset_id"] in chosen]
    splits = {101: "training", 102: "training", 103: "validation"}
    for row in rows:
        row["split"] = splits.get(row["asset_id"], "test")  # queries follow their reference
    export = write_jsonl(exports["csv"].parent / "split.jsonl", rows)
    text = Path(mapping).read_text().replace("split: null", "split: split")
    text = text.replace("  # split:", "  split:")
    (tmp_path / "mapping.yaml").write_text(text)
    datamodule = BusinessDataModule(str(tmp_path), str(export), str(tmp_path / "mapping.yaml"))
    with pytest.warns(UserWarning, match=r"rejected 1 of 6 export rows \(reference_in_train 1\)"):
        datamodule.prepare_data()
    datamodule.setup("fit")
    assert datamodule.tracks.set_index("track_id")["split"].to_dict() == {
        "101": "train",
        "102": "train",
        "103": "val",
        "104": "test",
    }
    assert datamodule.queries["query_id"].tolist() == ["203"]  # 201's reference is in train
    for row in rows:
        row["artist_id"] = 1  # one artist in train and val
    leaking = write_jsonl(exports["csv"].parent / "leaking.jsonl", rows)
    leaky = BusinessDataModule(str(tmp_path), str(leaking), str(tmp_path / "mapping.yaml"))
    with pytest.raises(
        ManifestError, match=r"leaking.jsonl: train/eval leakage: group\(s\) \['1'\]"
    ):
        leaky.list_tracks()


def test_export_without_queries_gets_degraded_queries(
    exports: dict[str, Path], mapping: str, tmp_path: Path
) -> None:
    export = write_csv(exports["csv"].parent / "catalog_only.csv", export_rows()[:10])
    datamodule = BusinessDataModule(
        str(tmp_path),
        str(export),
        mapping,
        val_query_tracks=2,
        query_lengths_s=(1.0,),
        query_degradations=("clean",),
        **SETTINGS,
    )
    datamodule.prepare_data()
    datamodule.setup("fit")
    assert len(datamodule.val_queries) == 2
    assert set(datamodule.val_queries["degradation"]) == {"clean"}
    assert "genre" in bucket_columns(datamodule.val_queries)


@pytest.mark.slow
def test_fit_runs_from_the_shipped_config(
    exports: dict[str, Path], mapping: str, shipped_config, workdir: Path
) -> None:
    with pytest.warns(UserWarning, match="rejected 7 of 22 export rows"):
        cli = fit_two_steps(
            shipped_config("business"),
            "runs/business",
            {"export": str(exports["sql"]), "mapping": mapping, **SETTINGS},
        )
    assert cli.trainer.global_step == 2
    # The logged bucket metrics are the per-query ranks' (query 203 is the one hum).
    report = validation_report(workdir / "runs/business")
    humming = recomputed(report["per_query"], "hard_case=humming")
    assert humming["queries"] == 1 and report["results"]["overall"]["queries"] == 5
    metrics = cli.trainer.callback_metrics
    assert float(metrics["val/top1/hard_case=humming"]) == pytest.approx(humming["top1"])
    assert float(metrics["val/mrr"]) == pytest.approx(recomputed(report["per_query"])["mrr"])
    assert (workdir / "runs/business/checkpoints/last.ckpt").is_file()
