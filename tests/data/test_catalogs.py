"""acr.data.catalogs: folder and table catalogs, their track ids, and the rows and entries
a catalog rejects (with the reason) while the others are read."""

import os
from pathlib import Path

import pandas as pd
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from acr.data.catalogs import read_catalog
from acr.data.manifests import ManifestError, id_problem, write_table

# Any text a table cell may hold (hypothesis leaves out lone surrogates).
CELLS = st.text(max_size=12)


@pytest.fixture
def catalog(tmp_path: Path) -> Path:
    """A folder catalog: six songs in two album folders and two loose files (listed, not read)."""
    root = tmp_path / "catalog"
    for seed in range(6):
        (root / f"album{seed % 2}").mkdir(parents=True, exist_ok=True)
        (root / f"album{seed % 2}" / f"song{seed}.flac").write_bytes(b"")
    (root / "broken.mp3").write_bytes(b"")
    (root / "silence.wav").write_bytes(b"")
    return root


def test_folder_catalog_ids_are_paths_below_the_folder(catalog: Path) -> None:
    tracks = read_catalog(catalog)
    songs = [f"album{seed % 2}/song{seed}" for seed in range(6)]
    assert sorted(tracks["track_id"]) == sorted(["broken", "silence", *songs])


def test_table_catalog_resolves_relative_paths_and_rejects_duplicates(catalog: Path) -> None:
    table = pd.DataFrame(
        {"track_id": ["a", "b"], "path": ["album0/song0.flac", "album1/song1.flac"]}
    )
    write_table(table, catalog / "catalog.jsonl")
    assert read_catalog(catalog / "catalog.jsonl")["path"].iloc[0] == str(
        catalog / "album0" / "song0.flac"
    )
    write_table(pd.concat([table, table.head(1)]), catalog / "twice.csv")
    with pytest.raises(ManifestError, match="duplicate track_id 'a'"):
        read_catalog(catalog / "twice.csv")


def test_catalog_rows_without_a_usable_id_or_path_are_rejected_naming_the_row(
    catalog: Path,
) -> None:
    rows = pd.DataFrame(
        {
            "track_id": ["a", "b", "", "   ", "line\nbreak", "c"],
            "path": ["album0/song0.flac", "", "album1/song1.flac", "x.flac", "y.flac", "s.mp3"],
        }
    )
    write_table(rows, catalog / "catalog.csv")
    tracks = read_catalog(catalog / "catalog.csv")
    assert tracks["track_id"].tolist() == ["a", "c"]
    assert tracks["path"].tolist() == [str(catalog / "album0/song0.flac"), str(catalog / "s.mp3")]
    reasons = [entry["reason"] for entry in tracks.attrs["rejected"]]
    assert reasons == [
        "line 3: empty path (track_id 'b')",
        "line 4: empty track_id",
        "line 5: empty track_id",
        "line 6: track_id 'line\\nbreak' holds a control character (U+000A)",
    ]
    assert [entry["path"] for entry in tracks.attrs["rejected"]][1:3] == [
        "album1/song1.flac",
        "x.flac",
    ]
    write_table(rows.iloc[1:3], catalog / "bad.csv")
    with pytest.raises(ManifestError, match="bad.csv: catalog holds no usable row: 2 rejected"):
        read_catalog(catalog / "bad.csv")
    write_table(pd.concat([rows, rows.head(1)]), catalog / "twice.csv")
    with pytest.raises(ManifestError, match="duplicate track_id 'a'"):
        read_catalog(catalog / "twice.csv")


def test_folder_entries_that_are_not_files_are_rejected_with_the_reason(catalog: Path) -> None:
    (catalog / "folder.wav").mkdir()
    os.symlink(catalog / "nowhere.flac", catalog / "dangling.flac")
    os.symlink(catalog / "loop.mp3", catalog / "loop.mp3")
    os.symlink(catalog / "album0", catalog / "linked.ogg")
    tracks = read_catalog(catalog)
    assert "silence" in set(tracks["track_id"]) and len(tracks) == 8
    assert {Path(entry["path"]).name: entry["reason"] for entry in tracks.attrs["rejected"]} == {
        "dangling.flac": "a broken link: its target does not exist",
        "folder.wav": "a folder, not an audio file",
        "linked.ogg": "a link to a folder, not an audio file",
        "loop.mp3": "a link loop: the link leads back to itself",
    }


@settings(max_examples=60, deadline=None)
@given(cells=st.lists(st.tuples(CELLS, CELLS), min_size=1, max_size=6))
def test_catalog_parsing_keeps_usable_rows_and_rejects_the_others(
    tmp_path_factory, cells: list[tuple[str, str]]
) -> None:
    """Any cells: the tracks read are the rows with a usable id and a path, each other row is
    rejected once naming its line, and nothing but a ManifestError is raised."""
    folder = tmp_path_factory.mktemp("catalog")
    table = pd.DataFrame(cells, columns=["track_id", "path"])
    write_table(table, folder / "catalog.csv")
    usable = [id_problem(i) is None and p.strip() != "" for i, p in cells]
    ids = [track_id for (track_id, _), ok in zip(cells, usable) if ok]
    try:
        tracks = read_catalog(folder / "catalog.csv")
    except ManifestError as error:
        assert len(set(ids)) < len(ids) or not ids, error
        return
    assert tracks["track_id"].tolist() == ids
    lines = [int(entry["reason"].split(":")[0].removeprefix("line ")) for entry in
             tracks.attrs["rejected"]]  # fmt: skip
    assert len(lines) == usable.count(False) and lines == sorted(set(lines))
    if not any("\n" in cell or "\r" in cell for row in cells for cell in row):
        assert lines == [row + 2 for row, ok in enumerate(usable) if not ok]  # header: line 1
