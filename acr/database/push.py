"""Tracks into the database and out of it: ``acr db push`` (an index directory's tracks),
one track from audio (``POST /v1/tracks`` of a service on the database), ``acr db remove``.

A push goes segment by segment (acr.retrieval.store), one transaction each: the tracks, their
postings and their windows are committed together or not at all, so a kill leaves whole
tracks, and a rerun adds the tracks the database does not hold yet (by id). Postings and
windows go in with COPY in PostgreSQL's binary format, built by numpy a block at a time.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
from tqdm.auto import tqdm

from acr.database.schema import (
    DatabaseError,
    VectorIndexSettings,
    bump_version,
    connection,
    init_database,
    read_meta,
    redacted,
    windows_schema,
    write_meta,
)
from acr.retrieval.calibration import CALIBRATION_FILE
from acr.retrieval.fingerprint.engine import FingerprintEngine, Postings
from acr.retrieval.recognizer import FUSION_FILE
from acr.retrieval.store import IndexState, Segment, read_segment
from acr.retrieval.windows import WindowIndex

ENGINES = ("fingerprint", "embedding")  # what the database holds; melody stays in files
HNSW_BUILD_MEMORY = "512MB"  # a graph that fits is built without spilling (pgvector's advice)
COPY_BLOCK = 1 << 20  # postings (or windows) encoded and sent at a time
SPECTRA_BLOCK_BYTES = 1 << 25  # verification spectrograms sent at a time (~10 h of audio)
# Settings that may differ between two pushes of one catalog: where the checkpoint was read.
UNCOMPARED = {"checkpoint"}
COPY_POSTINGS = "COPY acr_postings (hash, track, frame) FROM STDIN (FORMAT BINARY)"
COPY_WINDOWS = "COPY acr_windows (track, start_s, embedding) FROM STDIN (FORMAT BINARY)"
_HEADER = b"PGCOPY\n\xff\r\n\x00" + bytes(8)  # signature, flags, header extension length
_TRAILER = b"\xff\xff"
_POSTING_ROW = np.dtype(
    [("fields", ">i2"), ("n1", ">i4"), ("hash", ">i4"), ("n2", ">i4"), ("track", ">i4"),
     ("n3", ">i4"), ("frame", ">i4")]
)  # fmt: skip


@dataclass
class PushSummary:
    database: str
    engines: list[str]
    added: int = 0
    present: int = 0  # tracks the database held already (a rerun, or another push)
    postings: int = 0
    windows: int = 0
    skipped_engines: list[str] = field(default_factory=list)
    fusion: bool = False
    calibration: bool = False


def push_index(index: str, database: str) -> PushSummary:
    """Copy an index directory's live tracks into a PostgreSQL database.

    Run ``acr db init`` first, or the database is initialised here with the default HNSW
    settings. Tracks the database holds already (by id) are left as they are, so a rerun
    after a kill goes on where it stopped. The first push records the engines' settings (and
    the embedding model); a later push of an index with other settings or another model is
    refused. The index's fusion and calibration go with it where they cover the engines the
    database holds.

    Args:
        index: the index directory (acr index), with a fingerprint and/or embedding engine.
        database: a postgresql:// URL.
    """
    directory = Path(index)
    meta = init_database(database)
    state = IndexState.read(directory)
    if not state.segments:
        raise DatabaseError(f"{directory}: no segment yet (the build has indexed no track)")
    names = [name for name in state.engines if name in ENGINES]
    if not names:
        raise DatabaseError(
            f"{directory}: engines {', '.join(state.engines)}; the database holds"
            f" {' and '.join(ENGINES)} only"
        )
    summary = PushSummary(
        redacted(database), names, skipped_engines=[n for n in state.engines if n not in names]
    )
    recorded = {name: state.engines[name] for name in names}
    segments = [(segment, read_segment(directory, segment)) for segment in state.segments]
    with connection(database) as db:
        with db.transaction():
            bump_version(db)
            _record_engines(db, meta, recorded, directory, state, database)
            summary.fusion, summary.calibration = _record_fusion(
                db, directory, not summary.skipped_engines
            )
        total = sum(len(contents.track_ids) - len(seg.removed) for seg, contents in segments)
        if "embedding" in names and _empty(db, "acr_windows"):
            # A first load: one HNSW build at the end is ~6x faster than inserting into the
            # graph window by window (pgvector). Searches meanwhile scan the table (slow, right);
            # a push killed before the end builds it on its rerun.
            db.execute("DROP INDEX IF EXISTS acr_windows_hnsw")
        with tqdm(total=total, desc="push", unit="track") as progress:
            for segment, contents in segments:
                live = [t for t in contents.track_ids if t not in set(segment.removed)]
                present = _present(db, live)
                summary.present += len(present)
                if len(present) < len(live):
                    postings, windows = _push_segment(
                        db, directory, segment, contents, names, present
                    )
                    summary.added += len(live) - len(present)
                    summary.postings += postings
                    summary.windows += windows
                progress.update(len(live))
        if "embedding" in names:
            meta = read_meta(db)
            db.execute(f"SET maintenance_work_mem = '{HNSW_BUILD_MEMORY}'")
            db.execute(windows_schema(meta["embedding_dim"], VectorIndexSettings(**meta["hnsw"])))
        if summary.added:
            # Index-only lookups need the visibility map that VACUUM sets; ANALYZE the plans.
            tables = "acr_tracks, acr_postings, acr_spectra" + (
                ", acr_windows" if "embedding" in names else ""
            )
            db.execute(f"VACUUM (ANALYZE) {tables}")
    return summary


def _record_engines(
    db: Any, meta: dict, recorded: dict, directory: Path, state: IndexState, database: str
) -> None:
    """The engines' settings (and the model) on the first push; the same ones after."""
    held = meta.get("engines")
    if held is not None:
        if _comparable(held) != _comparable(recorded):
            raise DatabaseError(
                f"{redacted(database)} holds a catalog of engines {', '.join(held)} with other"
                f" settings or another model than {directory}; push to another database"
            )
        return
    write_meta(db, "engines", recorded)
    if "embedding" in recorded:
        model = directory / state.segments[0].name / "embedding" / "model.ckpt"
        checkpoint = model.read_bytes()
        digest = hashlib.sha256(checkpoint).hexdigest()
        if digest != recorded["embedding"]["checkpoint_sha256"]:
            raise DatabaseError(f"{model}: not the model {directory} records (truncated?)")
        db.execute(
            "INSERT INTO acr_models (sha256, checkpoint) VALUES (%s, %s) ON CONFLICT DO NOTHING",
            (digest, checkpoint),
        )
        dim = WindowIndex.open([model.parent / "hnsw"]).dim
        hnsw = meta.get("hnsw") or {}
        db.execute(windows_schema(dim, VectorIndexSettings(**hnsw)))
        write_meta(db, "embedding_dim", dim)


def _comparable(engines: dict) -> dict:
    return {
        name: {key: value for key, value in settings.items() if key not in UNCOMPARED}
        for name, settings in engines.items()
    }


def _record_fusion(db: Any, directory: Path, complete: bool) -> tuple[bool, bool]:
    """The index's fusion.json and calibration.json as they are (read back with the same
    checks as from files), when the database holds every engine they were fitted with."""
    texts = {}
    for key, name in (("fusion", FUSION_FILE), ("calibration", CALIBRATION_FILE)):
        path = directory / name
        texts[key] = path.read_text() if complete and path.is_file() else None
        write_meta(db, key, texts[key])
    return texts["fusion"] is not None, texts["calibration"] is not None


def _empty(db: Any, table: str) -> bool:
    return db.execute(f"SELECT NOT EXISTS (SELECT 1 FROM {table})").fetchone()[0]


def _present(db: Any, track_ids: list[str]) -> set[str]:
    rows = db.execute(
        "SELECT track_id FROM acr_tracks WHERE track_id = ANY(%s)", (track_ids,)
    ).fetchall()
    return {row[0] for row in rows}


def _push_segment(
    db: Any, directory: Path, segment: Segment, contents: Any, names: list[str], present: set
) -> tuple[int, int]:
    """One segment's tracks that the database lacks, in one transaction."""
    folder = directory / segment.name
    removed = set(segment.removed) | present
    with db.transaction():
        bump_version(db)
        order = [i for i, t in enumerate(contents.track_ids) if t not in removed]
        numbers = _insert_tracks(
            db,
            [contents.track_ids[i] for i in order],
            [contents.audio_s[i] for i in order],
            [str(contents.sources[i][0]) if contents.sources[i] else "" for i in order],
        )
        postings = windows = 0
        if "fingerprint" in names:
            engine = FingerprintEngine.open([folder / "fingerprint"], [sorted(removed)])
            (part,) = engine._parts
            number_of = np.array([numbers.get(t, -1) for t in engine._track_ids], np.int64)
            postings = _copy_postings(db, part, number_of)
            _insert_spectra(db, part, number_of, engine.settings.verification_bands)
        if "embedding" in names:
            windows_index = WindowIndex.open([folder / "embedding" / "hnsw"], [sorted(removed)])
            windows = _copy_index_windows(db, windows_index, numbers)
    return postings, windows


def _insert_tracks(
    db: Any, track_ids: list[str], audio_s: list[float], sources: list[str]
) -> dict[str, int]:
    """New acr_tracks rows; their numbers by id (a duplicate id fails the transaction)."""
    import psycopg

    try:
        rows = db.execute(
            "INSERT INTO acr_tracks (track_id, audio_s, source)"
            " SELECT * FROM unnest(%s::text[], %s::real[], %s::text[])"
            " RETURNING track_id, number",
            (track_ids, audio_s, sources),
        ).fetchall()
    except psycopg.errors.UniqueViolation as error:
        detail = error.diag.message_detail
        raise DatabaseError(f"a track id is already in the database: {detail}") from error
    return dict(rows)


@contextmanager
def _binary_copy(db: Any, sql: str) -> Iterator[Callable[[bytes], None]]:
    """A ``COPY ... FROM STDIN (FORMAT BINARY)``: yields its write, for rows (numpy records of
    PostgreSQL's binary row layout) between the format's header and trailer."""
    with db.cursor().copy(sql) as copy:
        copy.write(_HEADER)
        yield copy.write
        copy.write(_TRAILER)


def _copy_postings(db: Any, part: Postings, number_of: np.ndarray) -> int:
    """COPY a part's postings of the tracks given a database number (others are -1)."""
    written = 0
    with _binary_copy(db, COPY_POSTINGS) as write:
        for first in range(0, len(part.tracks), COPY_BLOCK):
            rows = np.arange(first, min(first + COPY_BLOCK, len(part.tracks)))
            keys = part.keys[np.searchsorted(part.starts, rows, side="right") - 1]
            tracks = number_of[part.tracks[rows]]
            keep = tracks >= 0
            write(_posting_rows(keys[keep], tracks[keep], part.frames[rows][keep]))
            written += int(keep.sum())
    return written


def _insert_spectra(db: Any, part: Postings, number_of: np.ndarray, bands: int) -> None:
    """A part's verification spectrograms of the tracks given a database number, a block of
    about SPECTRA_BLOCK_BYTES at a time."""
    if not bands or part.spectra is None or part.spectrum_starts is None:
        return
    numbers, blobs, size = [], [], 0
    for track in np.flatnonzero(number_of >= 0):
        first, end = int(part.spectrum_starts[track]), int(part.spectrum_starts[track + 1])
        numbers.append(int(number_of[track]))
        blobs.append(np.ascontiguousarray(part.spectra[first:end]).tobytes())
        size += len(blobs[-1])
        if size >= SPECTRA_BLOCK_BYTES:
            _spectra_rows(db, numbers, blobs)
            numbers, blobs, size = [], [], 0
    if numbers:
        _spectra_rows(db, numbers, blobs)


def _spectra_rows(db: Any, numbers: list[int], blobs: list[bytes]) -> None:
    db.execute(
        "INSERT INTO acr_spectra (track, spectrum) SELECT * FROM unnest(%s::int[], %s::bytea[])",
        (numbers, blobs),
    )


def _posting_rows(hashes: np.ndarray, tracks: np.ndarray, frames: np.ndarray) -> bytes:
    rows = np.empty(len(hashes), _POSTING_ROW)
    rows["fields"], rows["n1"], rows["n2"], rows["n3"] = 3, 4, 4, 4
    rows["hash"] = np.asarray(hashes, np.uint32).view(np.int32)
    rows["track"], rows["frame"] = tracks, frames
    return rows.tobytes()


def _copy_index_windows(db: Any, index: WindowIndex, numbers: dict[str, int]) -> int:
    """COPY a segment's window vectors of the tracks given a database number."""
    number_of = np.array([numbers.get(t, -1) for t in index._all_ids], np.int64)
    tracks, starts = index._vector_track, index._vector_start_s
    written = 0
    block = max(1, COPY_BLOCK // max(index.dim, 1))
    with _binary_copy(db, COPY_WINDOWS) as write:
        for part in index._parts:
            labels = np.arange(part.first_label, part.first_label + part.vectors.size)
            labels = labels[number_of[tracks[labels]] >= 0]
            for first in range(0, len(labels), block):
                chunk = labels[first : first + block]
                vectors = part.vectors.vectors(chunk - part.first_label)
                write(_window_rows(number_of[tracks[chunk]], starts[chunk], vectors))
                written += len(chunk)
    return written


def _window_rows(tracks: np.ndarray, starts: np.ndarray, vectors: np.ndarray) -> bytes:
    """Rows of acr_windows; pgvector's binary vector is int16 dim, int16 0, then big-endian
    float4s."""
    dim = vectors.shape[1]
    rows = np.empty(
        len(tracks),
        [("fields", ">i2"), ("n1", ">i4"), ("track", ">i4"), ("n2", ">i4"), ("start", ">f4"),
         ("n3", ">i4"), ("dim", ">i2"), ("unused", ">i2"), ("vector", ">f4", (dim,))],
    )  # fmt: skip
    rows["fields"], rows["n1"], rows["n2"], rows["n3"] = 3, 4, 4, 4 + 4 * dim
    rows["track"], rows["start"], rows["dim"], rows["unused"] = tracks, starts, dim, 0
    rows["vector"] = vectors
    return rows.tobytes()


def add_track(
    database: str,
    track_id: str,
    audio_s: float,
    source: str,
    landmarks: tuple[np.ndarray, np.ndarray, np.ndarray | None] | None,
    windows: tuple[np.ndarray, np.ndarray] | None,
) -> int:
    """One track's features (extracted by the caller with the database's engines) in one
    transaction; returns its number. An id the database holds is a DatabaseError."""
    with connection(database) as db, db.transaction():
        bump_version(db)
        (number,) = _insert_tracks(db, [track_id], [audio_s], [source]).values()
        if landmarks is not None:
            hashes, frames, spectrum = landmarks
            with _binary_copy(db, COPY_POSTINGS) as write:
                write(_posting_rows(hashes, np.full(len(hashes), number), frames))
            if spectrum is not None:
                _spectra_rows(db, [number], [np.ascontiguousarray(spectrum).tobytes()])
        if windows is not None:
            vectors, starts = windows
            with _binary_copy(db, COPY_WINDOWS) as write:
                write(_window_rows(np.full(len(starts), number), starts, vectors))
    return number


def remove_tracks(database: str, track_ids: Sequence[str]) -> int:
    """Remove tracks from a database catalog, in one transaction.

    An id the database does not hold is an error, and nothing is removed.

    Args:
        database: a postgresql:// URL.
        track_ids: the tracks to remove.
    """
    track_ids = list(dict.fromkeys(track_ids))
    with connection(database) as db, db.transaction():
        bump_version(db)
        rows = db.execute(
            "SELECT track_id, number FROM acr_tracks WHERE track_id = ANY(%s)", (track_ids,)
        ).fetchall()
        missing = sorted(set(track_ids) - {row[0] for row in rows})
        if missing:
            raise DatabaseError(f"track {missing[0]!r} is not in the database; nothing removed")
        numbers = [row[1] for row in rows]
        db.execute("DELETE FROM acr_postings WHERE track = ANY(%s)", (numbers,))
        db.execute("DELETE FROM acr_spectra WHERE track = ANY(%s)", (numbers,))
        if db.execute("SELECT to_regclass('acr_windows') IS NOT NULL").fetchone()[0]:
            db.execute("DELETE FROM acr_windows WHERE track = ANY(%s)", (numbers,))
        db.execute("DELETE FROM acr_tracks WHERE number = ANY(%s)", (numbers,))
    return len(numbers)


def add_audio(
    database: str,
    engines: dict[str, Any],
    track_id: str,
    audio: np.ndarray,
    sample_rate: int,
    source: str = "",
) -> int:
    """Extract one track's features with the database's ``engines`` (acr.database.engines)
    and add it (:func:`add_track`); returns its number."""
    from acr.audio import resample

    def resampled(engine: Any) -> np.ndarray:
        return resample(audio, sample_rate, engine.sample_rate)

    landmarks = windows = None
    if "fingerprint" in engines:
        extracted = engines["fingerprint"].extractor()(resampled(engines["fingerprint"]))
        landmarks = (extracted.hashes, extracted.frames, extracted.spectrum)
    if "embedding" in engines:
        embedded = engines["embedding"].embed_track(resampled(engines["embedding"]))
        windows = (embedded.vectors, embedded.starts_s)
    return add_track(database, track_id, len(audio) / sample_rate, source, landmarks, windows)
