"""What a replica reads from the database: the catalog version, the tracks, postings by hash,
nearest windows and a track's windows. One connection per thread (the service searches in a
thread pool), opened on first use and again after the server went away, so a database restart
costs the requests made while it is down (DatabaseUnavailable, a 503), not the replica."""

from __future__ import annotations

import threading
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import numpy as np
import pandas as pd

from acr.database.schema import (
    CONNECT_TIMEOUT_S,
    DatabaseError,
    DatabaseUnavailable,
    check_schema,
    check_url,
    redacted,
    unreachable,
)

# A query's postings come back as one bytea of (hash, track, frame) big-endian int4 triples:
# ~4x faster than 250,000 rows through the driver.
POSTINGS_SQL = (
    "SELECT string_agg(int4send(hash) || int4send(track) || int4send(frame), ''::bytea)"
    " FROM acr_postings WHERE hash = ANY(%s::int4[])"
)
# Each query window's nearest catalog windows by inner product, through the HNSW index.
NEIGHBORS_SQL = (
    "SELECT q.n, w.track, w.start_s, -(w.embedding <#> q.v::vector) FROM"
    " unnest(%s::text[]) WITH ORDINALITY AS q(v, n) CROSS JOIN LATERAL"
    " (SELECT track, start_s, embedding FROM acr_windows"
    "  ORDER BY embedding <#> q.v::vector LIMIT %s) AS w"
)
SPANS_SQL = (
    "SELECT DISTINCT w.track, w.start_s, vector_send(w.embedding) FROM"
    " unnest(%s::int4[], %s::real[], %s::real[]) AS r(track, low, high)"
    " JOIN acr_windows AS w ON w.track = r.track AND w.start_s BETWEEN r.low AND r.high"
    " ORDER BY w.track, w.start_s"
)


FETCH_PARTS = 2  # statements per query's postings
FETCH_THREADS = 4  # connections per process (statements from any thread run on these)
SPLIT_ABOVE = 2048  # hashes worth a statement of their own


class DatabaseReader:
    """Reads one acr database (``url``); safe to share between threads."""

    def __init__(self, url: str) -> None:
        self.url = check_url(url)
        self._local = threading.local()
        self._tracks_lock = threading.Lock()
        self._tracks: tuple[int, pd.DataFrame] | None = None
        self._fetchers = ThreadPoolExecutor(FETCH_THREADS, thread_name_prefix="acr-postings")
        self.meta = self.read_meta()

    def connection(self) -> Any:
        """This thread's connection, (re)opened when needed."""
        import psycopg

        db = getattr(self._local, "db", None)
        if db is not None and not db.closed and not db.broken:
            return db
        try:
            db = psycopg.connect(self.url, autocommit=True, connect_timeout=CONNECT_TIMEOUT_S)
        except psycopg.OperationalError as error:
            raise unreachable(self.url, error) from error
        hnsw = getattr(self, "meta", {}).get("hnsw") or {}
        if "ef_search" in hnsw:
            db.execute(f"SET hnsw.ef_search = {int(hnsw['ef_search'])}")
        self._local.db = db
        return db

    def execute(self, sql: str, parameters: tuple = (), binary: bool = False) -> list[tuple]:
        """Rows of one statement, run on one of this reader's FETCH_THREADS threads: a process
        holds that many connections, however many threads ask."""
        return self._fetchers.submit(self._execute_here, sql, parameters, binary).result()

    def _execute_here(self, sql: str, parameters: tuple, binary: bool) -> list[tuple]:
        """Rows of one statement on this thread's connection (a read: tried again once on a
        new connection when the one this thread held was lost, as it is after a database
        restart); a server that cannot be reached is DatabaseUnavailable."""
        import psycopg

        for attempt in range(2):
            try:
                cursor = self.connection().cursor(binary=binary)
                return cursor.execute(sql, parameters).fetchall()
            except psycopg.OperationalError as error:
                self._local.db = None
                if attempt:
                    raise DatabaseUnavailable(f"{redacted(self.url)}: {error}") from error
        raise AssertionError("unreachable")

    def read_meta(self) -> dict[str, Any]:
        import psycopg

        try:
            meta = dict(self.execute("SELECT key, value FROM acr_meta"))
        except psycopg.errors.UndefinedTable:
            meta = {}
        check_schema(meta, self.url)
        if not meta.get("engines"):
            raise DatabaseError(f"{redacted(self.url)}: no catalog yet (acr db push)")
        return meta

    def version(self) -> int:
        return int(self.execute("SELECT value FROM acr_meta WHERE key = 'version'")[0][0])

    def tracks(self) -> pd.DataFrame:
        """number, track_id, audio_s, source of every track, in adding order (read again
        when the catalog version changed)."""
        version = self.version()
        with self._tracks_lock:
            if self._tracks is None or self._tracks[0] != version:
                rows = self.execute(
                    "SELECT number, track_id, audio_s, source FROM acr_tracks ORDER BY number"
                )
                table = pd.DataFrame(rows, columns=["number", "track_id", "audio_s", "source"])
                self._tracks = (version, table.astype({"number": np.int64, "audio_s": float}))
            return self._tracks[1]

    def track_ids_of(self, numbers: np.ndarray) -> list[str]:
        """The ids of track numbers (sorted, distinct), from the table as last read: a number
        names one track for good (an identity is never reused), so only a track added since
        makes it read again, and a search costs no version query."""
        with self._tracks_lock:
            cached = self._tracks
        table = cached[1] if cached is not None else self.tracks()
        positions = np.searchsorted(table["number"].to_numpy(), numbers)
        found = positions < len(table)
        if found.all() and (table["number"].to_numpy()[positions] == numbers).all():
            return table["track_id"].to_numpy()[positions].tolist()
        with self._tracks_lock:
            self._tracks = None
        table = self.tracks().set_index("number")
        # A track removed between the postings' read and this one: its id is gone too.
        return [table["track_id"].get(int(n), f"#{int(n)}") for n in numbers]

    def postings(self, hashes: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """(hash uint32, track number, frame) of every posting of these hashes. A query's
        ~10,000 hashes are looked up in FETCH_PARTS statements at once: the B-tree descents
        are most of a search's time, and the server runs each statement on one core."""
        keys = np.asarray(hashes, np.uint32).view(np.int32)
        parts = [
            part.tolist()
            for part in np.array_split(keys, max(1, min(FETCH_PARTS, len(keys) // SPLIT_ABOVE)))
        ]
        fetched = self._fetchers.map(
            lambda part: self._execute_here(POSTINGS_SQL, (part,), True)[0][0] or b"", parts
        )
        triples = np.frombuffer(b"".join(fetched), ">i4").reshape(-1, 3)
        return (
            triples[:, 0].astype(np.int32).view(np.uint32),
            triples[:, 1].astype(np.int64),
            triples[:, 2].astype(np.int32),
        )

    def spectra(self, requests: list[tuple[int, int, int]], bands: int) -> list[np.ndarray | None]:
        """Frames [first, end) of the verification spectrograms of (track number, first, end)
        requests, uint8 [frames, bands] (fewer past a track's end), in one statement; None for
        a track the database holds none of."""
        rows = self.execute(
            "SELECT r.i, substring(s.spectrum FROM r.first * %s + 1 FOR (r.stop - r.first) * %s)"
            " FROM unnest(%s::int[], %s::int[], %s::int[], %s::int[]) AS r(i, track, first, stop)"
            " LEFT JOIN acr_spectra s ON s.track = r.track",
            (bands, bands, *map(list, zip(*[(i, *r) for i, r in enumerate(requests)]))),
        )
        found: list[np.ndarray | None] = [None] * len(requests)
        for i, blob in rows:
            if blob is not None:
                found[i] = np.frombuffer(bytes(blob), np.uint8).reshape(-1, bands)
        return found

    def neighbors(
        self, vectors: np.ndarray, k: int
    ) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
        """(query window, track number, start_s, inner product) of each query window's ``k``
        nearest catalog windows."""
        literals = ["[" + ",".join(f"{x:.7g}" for x in row) + "]" for row in vectors]
        rows = self.execute(NEIGHBORS_SQL, (literals, int(k)))
        if not rows:
            return (np.zeros(0, np.int64),) * 2 + (np.zeros(0, np.float32),) * 2
        window, track, start, similarity = (np.array(column) for column in zip(*rows))
        return (
            window.astype(np.int64) - 1,
            track.astype(np.int64),
            start.astype(np.float32),
            similarity.astype(np.float32),
        )

    def spans(
        self, tracks: np.ndarray, low_s: np.ndarray, high_s: np.ndarray
    ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """(track number, start_s, vectors) of the windows of each track within its span, in
        track and time order, each window once."""
        rows = self.execute(
            SPANS_SQL,
            (
                np.asarray(tracks, np.int64).tolist(),
                np.asarray(low_s, np.float64).tolist(),
                np.asarray(high_s, np.float64).tolist(),
            ),
            binary=True,
        )
        if not rows:
            return np.zeros(0, np.int64), np.zeros(0, np.float32), np.zeros((0, 0), np.float32)
        track, start, packed = zip(*rows)
        vectors = np.stack([np.frombuffer(bytes(b)[4:], ">f4") for b in packed])
        return (
            np.array(track, np.int64),
            np.array(start, np.float32),
            vectors.astype(np.float32),
        )

    def checkpoint(self, sha256: str) -> bytes:
        rows = self.execute("SELECT checkpoint FROM acr_models WHERE sha256 = %s", (sha256,))
        if not rows:
            raise DatabaseError(f"{redacted(self.url)}: the model {sha256[:12]} is missing")
        return bytes(rows[0][0])
