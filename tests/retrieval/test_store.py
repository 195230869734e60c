"""acr.retrieval.store: an index directory read back whole, or refused in one line naming the
damaged file, by every command that reads one; segments confined to the index, and followed
again when a writer replaces one a reader was loading."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pytest

from acr.audio import save_audio
from acr.cli import main
from acr.retrieval.build import build_index
from acr.retrieval.engine import IndexDirectoryError
from acr.retrieval.fingerprint.engine import FingerprintEngine
from acr.retrieval.store import INDEX_FILE, LOAD_ATTEMPTS, IndexState, load_engines
from acr.synth import synthesize_track

RATE = 16000
SEGMENT = "segment-000002"  # three tracks, a segment every two: the last one holds the third
# Every command that reads an index: the searches, and an add of the catalog again (it opens
# every engine; its tracks are in already). A resumed build reads index.json and segment.json.
READERS = ("recognize", "evaluate", "fuse", "add")
COMMANDS = (*READERS, "resume")
WRITERS = ("resume", "add")
# The files of a segment, per engine (test_every_segment_file_is_damaged checks the list).
SEGMENT_FILES = {
    "fingerprint": [
        "fingerprint/fingerprint.json",
        "fingerprint/keys.npy",
        "fingerprint/starts.npy",
        "fingerprint/tracks.npy",
        "fingerprint/frames.npy",
        "fingerprint/spectra.npy",
        "fingerprint/spectrum_starts.npy",
    ],
    "melody": [
        "melody/settings.json",
        "melody/contours.npz",
        "melody/windows/hnsw.bin",
        "melody/windows/windows.json",
        "melody/windows/windows.npz",
    ],
}


@dataclass
class Built:
    catalog: Path
    indexes: dict[str, Path]
    clip: Path
    queries: Path


@pytest.fixture(scope="module")
def built(song_folder, tmp_path_factory: pytest.TempPathFactory) -> Built:
    """A fingerprint and a melody index (the melody one holds an HNSW window index) of three
    6-s songs, a clip of one of them and a query table; copy an index before changing it."""
    catalog = song_folder(3, 6.0, RATE)
    root = tmp_path_factory.mktemp("store")
    indexes = {engine: root / engine for engine in SEGMENT_FILES}
    for engine, directory in indexes.items():
        build_index(str(catalog), str(directory), engine, workers=1, save_every=2)
        assert IndexState.read(directory).segments[-1].name == SEGMENT
    clip = root / "clip.wav"
    save_audio(clip, synthesize_track(1, 6.0, RATE)[RATE : 4 * RATE], RATE)
    queries = root / "queries.csv"
    queries.write_text(f"query_id,path,track_id\nq1,{clip},song1\n")
    return Built(catalog, indexes, clip, queries)


def command_line(command: str, index: Path, engine: str, built: Built) -> list[str]:
    return {
        "recognize": ["recognize", "--index", str(index), str(built.clip)],
        "evaluate": ["evaluate", "--index", str(index), "--queries", str(built.queries)],
        "fuse": ["fuse", "--index", str(index), "--queries", f"[{built.queries}]"],
        "resume": ["index", "--catalog", str(built.catalog), "--output", str(index),
                   "--engine", engine, "--resume", "true", "--workers", "1"],
        "add": ["index", "add", str(index), str(built.catalog), "--workers", "1"],
    }[command]  # fmt: skip


# Each damage changes a copied index and returns the path the error must name.
Damage = Callable[[Path], Path]


@dataclass(frozen=True)
class Case:
    name: str
    engine: str
    damage: Damage
    commands: tuple[str, ...] = COMMANDS


def in_segment(relative: str, change: Callable[[Path], object]) -> Damage:
    def damage(index: Path) -> Path:
        path = index / SEGMENT / relative
        change(path)
        return path

    return damage


def edited_json(relative: str, edit: Callable[[dict], object], named: str = "") -> Damage:
    """Edit a JSON file of the index in place; the error must name ``named`` (default: it)."""

    def damage(index: Path) -> Path:
        path = index / relative
        content = json.loads(path.read_text())
        edit(content)
        path.write_text(json.dumps(content))
        return index / (named or relative)

    return damage


def edited_array(relative: str, edit: Callable[[np.ndarray], np.ndarray]) -> Damage:
    def change(path: Path) -> None:
        array = edit(np.load(path))
        with open(path, "wb") as stream:  # np.save(path) would add a second .npy
            np.save(stream, array)

    return in_segment(relative, change)


def edited_npz(relative: str, edit: Callable[[dict], object], named: str = "") -> Damage:
    def damage(index: Path) -> Path:
        path = index / SEGMENT / relative
        with np.load(path) as archive:
            arrays = dict(archive)
        edit(arrays)
        with open(path, "wb") as stream:
            np.savez(stream, **arrays)
        return index / SEGMENT / (named or relative)

    return damage


def segment_named(value: str | Callable[[Path], str]) -> Damage:
    """index.json listing ``value``, where a copy of the segment waits outside the index."""

    def damage(index: Path) -> Path:
        outside = index.parent / "outside"
        shutil.copytree(index / SEGMENT, outside)
        state = json.loads((index / INDEX_FILE).read_text())
        state["segments"][-1]["name"] = value(index) if callable(value) else value
        (index / INDEX_FILE).write_text(json.dumps(state))
        return index / INDEX_FILE

    return damage


def linked_segment(index: Path) -> str:
    (index / "segment-000009").symlink_to(index.parent / "outside")
    return "segment-000009"


def truncated(path: Path) -> None:
    path.write_bytes(path.read_bytes()[: path.stat().st_size // 2])


def garbage(path: Path) -> None:
    path.write_bytes(np.random.default_rng(0).bytes(max(path.stat().st_size, 64)))


DAMAGES: dict[str, Callable[[Path], object]] = {
    "truncated": truncated,
    "emptied": lambda path: path.write_bytes(b""),
    "garbage": garbage,
    "deleted": Path.unlink,
}


def generated_cases() -> list[Case]:
    """Every file of each engine's segment, and index.json, truncated, emptied, overwritten
    with random bytes, deleted (index.json has its own message when missing: not an index)."""
    cases = [
        Case(f"{Path(relative).name}-{kind}", engine, in_segment(relative, change), READERS)
        for engine, files in SEGMENT_FILES.items()
        for relative in files
        for kind, change in DAMAGES.items()
    ]
    for kind in ("truncated", "emptied", "garbage"):

        def index_json(index: Path, change: Callable[[Path], object] = DAMAGES[kind]) -> Path:
            change(index / INDEX_FILE)
            return index / INDEX_FILE

        cases.append(Case(f"index.json-{kind}", "fingerprint", index_json))
        # A segment's skipped.csv is read by every writer (a missing one: none skipped), and
        # its segment.json by every writer and reader.
        cases.append(
            Case(
                f"skipped.csv-{kind}",
                "fingerprint",
                in_segment("skipped.csv", DAMAGES[kind]),
                ("resume", "add"),
            )
        )
    for kind, change in DAMAGES.items():  # what a segment holds: read by the writers
        cases.append(
            Case(f"segment.json-{kind}", "melody", in_segment("segment.json", change), WRITERS)
        )
    return cases


def fusion(content: str) -> Damage:
    def damage(index: Path) -> Path:
        (index / "fusion.json").write_text(content)
        return index / "fusion.json"

    return damage


def write_json_list(index: Path) -> Path:
    (index / INDEX_FILE).write_text("[]")
    return index / INDEX_FILE


def deleted_segment(index: Path) -> Path:
    shutil.rmtree(index / SEGMENT)
    return index / SEGMENT


MANIFEST = f"{SEGMENT}/fingerprint/fingerprint.json"
# A track number out of range is met by a search (the postings are not read at load), after
# evaluate's progress bar has started: recognize of one file shows the error alone.
SEARCHES = ("recognize",)
WINDOWS = "melody/windows/windows.npz"
FUSION_READERS = ("recognize", "evaluate")  # fuse fits a new fusion; a build never reads it
CASES = [
    *generated_cases(),
    Case("index.json-a-list", "fingerprint", write_json_list),
    Case("index.json-unknown-engine", "fingerprint",
         edited_json(INDEX_FILE, lambda state: state["engines"].update(nonsense={}))),
    Case("index.json-extra-key", "fingerprint",
         edited_json(INDEX_FILE, lambda state: state.update(x=1))),
    Case("index.json-no-engines", "fingerprint",
         edited_json(INDEX_FILE, lambda state: state.pop("engines"))),
    Case("index.json-no-segments", "melody",
         edited_json(INDEX_FILE, lambda state: state.pop("segments"))),
    Case("index.json-old-snapshot-layout", "melody",
         edited_json(INDEX_FILE, lambda state: state.update(snapshot="snapshot-000003"))),
    Case("index.json-segment-twice", "fingerprint",
         edited_json(INDEX_FILE, lambda state: state["segments"].append(state["segments"][-1]))),
    Case("index.json-removed-unknown", "fingerprint",
         edited_json(INDEX_FILE, lambda state: state["segments"][-1]["removed"].append("x")),
         WRITERS),
    Case("index.json-removed-unknown-to-readers", "fingerprint",
         edited_json(INDEX_FILE, lambda state: state["segments"][-1]["removed"].append("x"),
                     named=MANIFEST), READERS[:3]),
    Case("index.json-tracks-miscounted", "melody",
         edited_json(INDEX_FILE, lambda state: state["segments"][-1].update(tracks=5),
                     named=f"{SEGMENT}/segment.json"), WRITERS),
    Case("segment.json-ids-of-another", "fingerprint",
         edited_json(f"{SEGMENT}/segment.json",
                     lambda contents: contents.update(track_ids=["x", "y"])),
         WRITERS),
    Case("index.json-wrong-type", "fingerprint",
         edited_json(INDEX_FILE, lambda state: state.update(processed="three"))),
    Case("segment-parent", "fingerprint", segment_named("../")),
    Case("segment-outside", "fingerprint", segment_named("../outside")),
    Case("segment-absolute", "fingerprint",
         segment_named(lambda index: str(index.parent / "outside"))),
    Case("segment-through", "fingerprint", segment_named(f"{SEGMENT}/../../outside")),
    Case("segment-symlink", "fingerprint", segment_named(linked_segment)),
    Case("segment-deleted", "melody", deleted_segment),
    Case("tracks.npy-short", "fingerprint",
         edited_array("fingerprint/tracks.npy", lambda array: array[:-1]), READERS),
    Case("tracks.npy-beyond-ids", "fingerprint",
         edited_array("fingerprint/tracks.npy", lambda array: array + 3), SEARCHES),
    Case("starts.npy-unsorted", "fingerprint",
         edited_array("fingerprint/starts.npy", lambda array: array[::-1]), READERS),
    Case("frames.npy-floats", "fingerprint",
         edited_array("fingerprint/frames.npy", lambda array: array * 1.0), READERS),
    Case("fingerprint.json-fewer-ids", "fingerprint",
         edited_json(MANIFEST, lambda manifest: manifest["track_ids"].pop(),
                     named=f"{SEGMENT}/fingerprint/spectrum_starts.npy"), READERS),
    Case("spectra.npy-fewer-frames", "fingerprint",
         edited_array("fingerprint/spectra.npy", lambda array: array[:-1]), READERS),
    Case("spectra.npy-other-bands", "fingerprint",
         edited_array("fingerprint/spectra.npy", lambda array: array[:, :-1]), READERS),
    Case("spectrum_starts.npy-unsorted", "fingerprint",
         edited_array("fingerprint/spectrum_starts.npy", lambda array: array[::-1]), READERS),
    Case("fingerprint.json-unknown-setting", "fingerprint",
         edited_json(MANIFEST, lambda manifest: manifest["settings"].update(x=1)), READERS),
    Case("fingerprint.json-no-track-ids", "fingerprint",
         edited_json(MANIFEST, lambda manifest: manifest.pop("track_ids")), READERS),
    Case("windows.npz-window-short", "melody",
         edited_npz(WINDOWS, lambda table: table.update(track=table["track"][:-1])), READERS),
    Case("windows.npz-fewer-windows", "melody",
         edited_npz(WINDOWS,
                    lambda table: table.update(track=table["track"][:-1],
                                               start_s=table["start_s"][:-1]),
                    named="melody/windows/hnsw.bin"), READERS),
    Case("windows.json-no-dim", "melody",
         edited_json(f"{SEGMENT}/melody/windows/windows.json", lambda table: table.pop("dim")),
         READERS),
    Case("contours.npz-cells-of-other-tracks", "melody",
         edited_npz("melody/contours.npz", lambda table: table.update(cells=table["cells"][:-1])),
         READERS),
    Case("fusion.json-garbage", "fingerprint", fusion("{not json"), FUSION_READERS),
    Case("fusion.json-a-list", "fingerprint", fusion("[1, 2]"), FUSION_READERS),
    Case("fusion.json-wrong-types", "fingerprint", fusion('{"engines": 5, "weights": "x"}'),
         FUSION_READERS),
]  # fmt: skip


@pytest.mark.parametrize(
    "case, command",
    [pytest.param(case, command, id=f"{case.name}-{command}") for case in CASES
     for command in case.commands],
)  # fmt: skip
def test_a_damaged_index_is_one_line_naming_the_file(
    case: Case, command: str, built: Built, tmp_path: Path, capsys
) -> None:
    index = tmp_path / "index"
    shutil.copytree(built.indexes[case.engine], index, symlinks=True)
    named = case.damage(index)
    capsys.readouterr()
    assert main(command_line(command, index, case.engine, built)) == 1
    lines = [line for line in capsys.readouterr().err.splitlines() if line.strip()]
    assert len(lines) == 1, lines
    prog = {"resume": "acr index", "add": "acr index add"}.get(command, f"acr {command}")
    assert lines[0].startswith(f"{prog}: error: {named}"), lines[0]


def test_every_segment_file_is_damaged(built: Built) -> None:
    """The generated cases cover every file a segment holds."""
    for engine, directory in built.indexes.items():
        segment = directory / SEGMENT
        files = sorted(str(p.relative_to(segment)) for p in segment.rglob("*") if p.is_file())
        assert files == sorted([*SEGMENT_FILES[engine], "skipped.csv", "segment.json"])


@pytest.mark.slow  # a fresh interpreter imports torch: seconds each
@pytest.mark.parametrize(
    "case", [case for case in CASES if case.name in ("index.json-a-list", "hnsw.bin-truncated")],
    ids=lambda case: case.name,
)  # fmt: skip
def test_a_damaged_index_gives_no_traceback_from_the_shell(
    case: Case, built: Built, tmp_path: Path
) -> None:
    index = tmp_path / "index"
    shutil.copytree(built.indexes[case.engine], index)
    named = case.damage(index)
    command = [sys.executable, "-m", "acr", "recognize", "--index", str(index), str(built.clip)]
    result = subprocess.run(command, capture_output=True, text=True, timeout=120)
    assert result.returncode == 1
    assert "Traceback" not in result.stderr
    assert result.stderr.strip() == result.stderr.strip().splitlines()[0]
    assert result.stderr.startswith(f"acr recognize: error: {named}")


def test_reader_follows_index_json_when_a_writer_replaced_its_segments(
    built: Built, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The race of a reader beside a writer: the reader has read index.json, then a compaction
    switches it to a merged segment and deletes the ones the reader is opening."""
    index = tmp_path / "index"
    shutil.copytree(built.indexes["fingerprint"], index)
    open_parts = FingerprintEngine.open.__func__
    opened = []

    def open_while_a_writer_switches(cls, directories, removed=()) -> FingerprintEngine:
        opened.append([Path(d).parent.name for d in directories])
        if len(opened) == 1:
            state = IndexState.read(index)
            os.rename(index / state.segments[0].name, index / "segment-000009")
            state.segments[0].name = "segment-000009"
            state.write(index)
        return open_parts(cls, directories, removed)

    monkeypatch.setattr(FingerprintEngine, "open", classmethod(open_while_a_writer_switches))
    engines = load_engines(index)
    assert opened == [["segment-000001", SEGMENT], ["segment-000009", SEGMENT]]
    assert engines["fingerprint"].track_ids == ["song0", "song1", "song2"]


def test_reader_gives_up_on_an_index_that_keeps_changing(
    built: Built, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    index = tmp_path / "index"
    shutil.copytree(built.indexes["fingerprint"], index)
    opened = []

    def always_replaced(cls, directories, removed=()) -> FingerprintEngine:
        opened.append(directories)
        state = IndexState.read(index)
        segment = state.segments[-1]
        renamed = f"segment-{int(segment.name.split('-')[1]) + 1:06d}"
        os.rename(index / segment.name, index / renamed)
        segment.name = renamed
        state.write(index)
        raise IndexDirectoryError(f"{directories[-1]}: missing")

    monkeypatch.setattr(FingerprintEngine, "open", classmethod(always_replaced))
    with pytest.raises(IndexDirectoryError, match="missing"):
        load_engines(index)
    assert len(opened) == LOAD_ATTEMPTS


@pytest.mark.parametrize("save_every", [1, 3])
def test_finished_build_is_complete_when_its_track_count_is_a_multiple_of_save_every(
    built: Built, tmp_path: Path, save_every: int
) -> None:
    """Three tracks: the last periodic segment is the last one; no empty segment follows."""
    build_index(str(built.catalog), str(tmp_path / "index"), workers=1, save_every=save_every)
    state = IndexState.read(tmp_path / "index")
    assert state.complete and state.tracks == 3
    assert [s.tracks for s in state.segments] == [1, 1, 1] if save_every == 1 else [3]
    listed = sorted(p.name for p in (tmp_path / "index").glob("segment-*"))
    assert listed == [s.name for s in state.segments]


@pytest.mark.slow
def test_a_damaged_embedding_model_is_one_line_naming_it(
    built: Built, tiny_run: Path, tmp_path: Path, capsys
) -> None:
    """The embedding engine's copy of its model, truncated: refused before torch reads it."""
    index = tmp_path / "index"
    checkpoint = tiny_run / "checkpoints" / "last.ckpt"
    build_index(str(built.catalog), str(index), "embedding", str(checkpoint), workers=1)
    model = index / "segment-000001" / "embedding" / "model.ckpt"
    truncated(model)
    capsys.readouterr()
    assert main(["recognize", "--index", str(index), str(built.clip)]) == 1
    lines = [line for line in capsys.readouterr().err.splitlines() if line.strip()]
    assert len(lines) == 1 and lines[0].startswith(f"acr recognize: error: {model}: not the model")
    model.unlink()
    assert main(["recognize", "--index", str(index), str(built.clip)]) == 1
    assert capsys.readouterr().err.startswith(f"acr recognize: error: {model}: missing")
