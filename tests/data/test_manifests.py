"""acr.data.manifests: track and query tables, their round trips (any text id), relative
paths, the errors each kind of bad table gets, and query rows without a clip."""

import math
from pathlib import Path

import pandas as pd
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from acr.data.manifests import (
    ManifestError,
    QueryClip,
    bucket_columns,
    read_queries,
    read_table,
    resolve_paths,
    validate_queries,
    validate_tracks,
    write_table,
)

# Any text a table cell may hold (hypothesis leaves out lone surrogates, which UTF-8 cannot
# write); the properties run in tmp folders made per example.
CELLS = st.text(max_size=12)


@pytest.fixture
def tracks(tmp_path: Path) -> pd.DataFrame:
    rows = []
    for index, split in enumerate(["train", "train", "val", "val"]):
        path = tmp_path / f"t{index}.wav"
        path.write_bytes(b"")  # existence is what validation checks
        rows.append(
            {
                "track_id": f"00{index}",
                "path": str(path),
                "duration_s": 30.0,
                "split": split,
                "role": "reference",
                "source": "test",
                "group": f"g{index}",
            }
        )
    return pd.DataFrame(rows)


@pytest.fixture
def queries(tmp_path: Path) -> pd.DataFrame:
    path = tmp_path / "q.wav"
    path.write_bytes(b"")
    return pd.DataFrame(
        [
            {
                "query_id": "q1",
                "track_id": "002",
                "path": str(path),
                "length_s": 3.0,
                "degradation": "noise",
            },
            {
                "query_id": "q2",
                "track_id": "003",
                "path": None,
                "source": str(path),
                "offset_s": 1.0,
                "length_s": 1.0,
                "degradation": "clean",
            },
        ]
    )


@pytest.mark.parametrize("suffix", [".csv", ".jsonl"])
def test_tables_round_trip_and_keep_string_ids(tmp_path: Path, tracks, suffix: str) -> None:
    path = tmp_path / f"tracks{suffix}"
    write_table(tracks, path)
    loaded = read_table(path)
    assert loaded["track_id"].tolist() == ["000", "001", "002", "003"]
    assert loaded["duration_s"].tolist() == [30.0] * 4
    validate_tracks(loaded, path)


def test_relative_paths_resolve_against_the_table_folder(tmp_path: Path) -> None:
    table = pd.DataFrame({"path": ["audio/a.wav", "/abs/b.wav"]})
    resolved = resolve_paths(table, tmp_path, ["path"])
    assert resolved["path"].tolist() == [str(tmp_path / "audio/a.wav"), "/abs/b.wav"]


def test_missing_path_is_named(tracks) -> None:
    tracks.loc[1, "path"] = "/nowhere/missing.wav"
    with pytest.raises(ManifestError, match="tracks.csv: 1 path file.*missing.wav"):
        validate_tracks(tracks, "tracks.csv")


def test_duplicate_ids_unknown_splits_and_missing_columns(tracks) -> None:
    duplicated = tracks.copy()
    duplicated.loc[3, "track_id"] = "000"
    with pytest.raises(ManifestError, match=r"duplicate track_id \['000'\]"):
        validate_tracks(duplicated, "t.csv")
    unknown = tracks.copy()
    unknown.loc[0, "split"] = "dev"
    with pytest.raises(ManifestError, match=r"unknown split\(s\) \['dev'\]"):
        validate_tracks(unknown, "t.csv")
    with pytest.raises(ManifestError, match="missing column.*duration_s"):
        validate_tracks(tracks.drop(columns="duration_s"), "t.csv")


def test_group_in_train_and_val_is_leakage(tracks) -> None:
    tracks.loc[2, "group"] = "g0"
    with pytest.raises(ManifestError, match=r"leakage: group\(s\) \['g0'\]"):
        validate_tracks(tracks, "t.csv")


def test_queries_validate_and_report_their_buckets(tracks, queries) -> None:
    validate_queries(queries, tracks, "q.csv")
    assert bucket_columns(queries) == ["length_s", "degradation"]


def test_query_of_a_training_track_is_leakage(tracks, queries) -> None:
    queries.loc[0, "track_id"] = "000"
    with pytest.raises(ManifestError, match=r"leakage: queries of training track\(s\) \['000'\]"):
        validate_queries(queries, tracks, "q.csv")


def test_query_without_location_or_with_unknown_track(tracks, queries) -> None:
    unlocated = queries.copy()
    unlocated.loc[1, "source"] = None
    with pytest.raises(ManifestError, match=r"\['q2'\] have neither path nor source"):
        validate_queries(unlocated, tracks, "q.csv")
    queries.loc[0, "track_id"] = "999"
    with pytest.raises(ManifestError, match="unknown track_id"):
        validate_queries(queries, tracks, "q.csv")


def test_query_tables_resolve_relative_paths_and_reject_duplicates(tmp_path: Path) -> None:
    queries = pd.DataFrame(
        {
            "query_id": ["q1", "q2", "q3", "q4"],
            "path": ["a.wav", "b.wav", "c.wav", "d.wav"],
            "track_id": ["A", "B", "C", "D"],
        }
    )
    write_table(queries, tmp_path / "sets" / "queries.jsonl")
    loaded = read_queries(tmp_path / "sets" / "queries.jsonl")
    assert loaded["path"].iloc[0] == str(tmp_path / "sets" / "a.wav")
    write_table(pd.concat([queries, queries.head(1)]), tmp_path / "duplicated.csv")
    with pytest.raises(ManifestError, match=r"duplicate query_id \['q1'\]"):
        read_queries(tmp_path / "duplicated.csv")
    write_table(queries.drop(columns="track_id"), tmp_path / "no_truth.csv")
    with pytest.raises(ManifestError, match="track_id"):
        read_queries(tmp_path / "no_truth.csv")
    assert math.isnan(
        read_queries(tmp_path / "no_truth.csv", require_truth=False)
        .get("track_id", pd.Series([math.nan]))
        .iloc[0]
    )


@pytest.mark.parametrize(
    ("row", "reason"),
    [
        ({"path": ""}, "no path, and no source"),
        (
            {"path": None, "source": "a.wav", "offset_s": math.nan, "length_s": 1.0},
            "offset_s .* empty",
        ),
        ({"source": "a.wav", "offset_s": "1m", "length_s": 1.0}, "offset_s .* not '1m'"),
        ({"source": "a.wav", "offset_s": -1.0, "length_s": 1.0}, "offset_s must be a number >= 0"),
        ({"source": "a.wav", "offset_s": 1.0, "length_s": 0.0}, "length_s must be a number > 0"),
        ({"source": "a.wav", "offset_s": 1.0}, "length_s .* empty"),
    ],
)
def test_a_query_row_without_a_clip_says_why(row: dict, reason: str) -> None:
    with pytest.raises(ValueError, match=reason):
        QueryClip.of(row)


@settings(max_examples=60, deadline=None)
@given(ids=st.lists(CELLS.filter(lambda text: text.strip()), min_size=1, max_size=6, unique=True))
def test_query_tables_round_trip_any_text_id(tmp_path_factory, ids: list[str]) -> None:
    """A comma, a quote, a line break or a carriage return in an id stays in its cell."""
    folder = tmp_path_factory.mktemp("round-trip")
    table = pd.DataFrame({"query_id": ids, "path": ["/q.wav"] * len(ids), "track_id": ids[::-1]})
    for suffix in (".csv", ".jsonl"):
        write_table(table, folder / f"queries{suffix}")
        loaded = read_queries(folder / f"queries{suffix}")
        assert loaded["query_id"].tolist() == ids
        assert loaded["track_id"].tolist() == ids[::-1]
