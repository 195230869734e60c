"""The database's tables, ``acr db init``, and connections that fail fast.

Tables (all named ``acr_*``, so the catalog can share a database with an application)::

    acr_meta       key -> jsonb: schema version, catalog version (bumped by every change,
                   what replicas poll), the engines and their settings, fusion, calibration,
                   the vector index settings
    acr_tracks     number (identity), track_id (unique), audio_s, source file
    acr_models     sha256 -> the embedding checkpoint's bytes (replicas need no shared disk)
    acr_postings   (hash, track, frame): one landmark each, a B-tree on hash that carries
                   track and frame (index-only lookups), a BRIN on track (rows arrive in track
                   order, so deleting a track finds its rows from a few kB of index)
    acr_spectra    (track, spectrum): a track's verification spectrogram (uint8 frames of
                   verification_bands bytes, acr.retrieval.fingerprint.verification); a
                   search reads the byte ranges of its best candidates only
    acr_windows    (track, start_s, embedding vector(D)): an HNSW index (inner product) and a
                   B-tree on (track, start_s) for the sequence rescoring

A hash is a uint32 stored as the int4 of the same bits. No foreign keys: a track's rows are
written and deleted with it in one transaction, and a foreign key would check every posting.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import asdict, dataclass
from typing import Any
from urllib.parse import urlsplit

SCHEMA_VERSION = 1
CONNECT_TIMEOUT_S = 3  # a replica whose database is down answers 503 after this, not a minute
URL_SCHEMES = ("postgresql", "postgres")


class DatabaseError(RuntimeError):
    """A database that cannot be used as asked (not initialised, other settings, a bad URL)."""


class DatabaseUnavailable(DatabaseError):
    """The database server cannot be reached now (down, restarting, refusing connections)."""


@dataclass(frozen=True)
class VectorIndexSettings:
    """pgvector's HNSW index of the embedding windows.

    Args:
        m: graph degree (pgvector's default 16; 16-32 balances recall and memory).
        ef_construction: build-time beam width (higher: a better graph, a slower build).
        ef_search: query-time beam width, set per query (higher: better recall, slower).
    """

    m: int = 16
    ef_construction: int = 200
    ef_search: int = 128

    def __post_init__(self) -> None:
        for name, value in asdict(self).items():
            if type(value) is not int or value < 1:
                raise ValueError(f"hnsw.{name} must be a positive integer, got {value!r}")
        if self.ef_construction < 2 * self.m:
            raise ValueError("hnsw.ef_construction must be at least 2 * hnsw.m (pgvector)")


BASE_SCHEMA = """
CREATE EXTENSION IF NOT EXISTS vector;
CREATE TABLE IF NOT EXISTS acr_meta (key text PRIMARY KEY, value jsonb NOT NULL);
CREATE TABLE IF NOT EXISTS acr_tracks (
    number integer GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    track_id text NOT NULL UNIQUE,
    audio_s real NOT NULL,
    source text NOT NULL DEFAULT '',
    added timestamptz NOT NULL DEFAULT now()
);
CREATE TABLE IF NOT EXISTS acr_models (sha256 text PRIMARY KEY, checkpoint bytea NOT NULL);
CREATE TABLE IF NOT EXISTS acr_postings (
    hash integer NOT NULL, track integer NOT NULL, frame integer NOT NULL
);
CREATE INDEX IF NOT EXISTS acr_postings_hash ON acr_postings (hash) INCLUDE (track, frame);
CREATE INDEX IF NOT EXISTS acr_postings_track ON acr_postings USING brin (track);
CREATE TABLE IF NOT EXISTS acr_spectra (track integer PRIMARY KEY, spectrum bytea NOT NULL);
"""


def windows_schema(dim: int, vectors: VectorIndexSettings) -> str:
    """The window table of ``dim``-d embeddings (made by the first push of an embedding index:
    the dimension is the model's)."""
    return f"""
CREATE TABLE IF NOT EXISTS acr_windows (
    track integer NOT NULL, start_s real NOT NULL, embedding vector({int(dim)}) NOT NULL
);
CREATE INDEX IF NOT EXISTS acr_windows_track ON acr_windows (track, start_s);
CREATE INDEX IF NOT EXISTS acr_windows_hnsw ON acr_windows USING hnsw (embedding vector_ip_ops)
    WITH (m = {int(vectors.m)}, ef_construction = {int(vectors.ef_construction)});
"""


def check_url(url: str) -> str:
    """A postgresql:// URL (libpq's form), else DatabaseError."""
    if not isinstance(url, str) or urlsplit(url).scheme not in URL_SCHEMES:
        raise DatabaseError(
            f"--database: {redacted(url)!r} is not a postgresql://USER@HOST:PORT/NAME URL"
        )
    return url


def redacted(url: object) -> str:
    """The URL without its password, for messages and logs."""
    return re.sub(r"(//[^:/@]*:)[^@]*@", r"\1***@", str(url))


def unreachable(url: str, error: Exception) -> DatabaseUnavailable:
    """The error of a server that refused or did not answer a connection (libpq's first line
    says why; the rest is advice)."""
    detail = (str(error).strip().splitlines() or [""])[0].strip()
    return DatabaseUnavailable(f"{redacted(url)}: cannot connect ({detail})")


@contextmanager
def connection(url: str, autocommit: bool = True) -> Iterator[Any]:
    """A connection, closed at the end; a server that cannot be reached is DatabaseUnavailable
    after CONNECT_TIMEOUT_S."""
    import psycopg

    try:
        connection = psycopg.connect(
            check_url(url), autocommit=autocommit, connect_timeout=CONNECT_TIMEOUT_S
        )
    except psycopg.OperationalError as error:
        raise unreachable(url, error) from error
    with connection:
        yield connection


def init_database(database: str, hnsw: VectorIndexSettings = VectorIndexSettings()) -> dict:  # noqa: B008 (frozen)
    """Create acr's tables in a PostgreSQL database with pgvector, or check them.

    The window table is made by the first push of an index with an embedding engine (its
    dimension is the model's). Running it again on an initialised database changes nothing.

    Args:
        database: a postgresql:// URL.
        hnsw: the HNSW index of the embedding windows.
    """
    import psycopg

    with connection(database) as db:
        try:
            with db.transaction():
                db.execute("SELECT pg_advisory_xact_lock(hashtext('acr db init'))")
                db.execute(BASE_SCHEMA)
                recorded = read_meta(db)
                if "schema_version" not in recorded:
                    write_meta(db, "schema_version", SCHEMA_VERSION)
                    write_meta(db, "version", 0)
                    write_meta(db, "hnsw", asdict(hnsw))
                    recorded = read_meta(db)
        except psycopg.errors.FeatureNotSupported as error:
            raise DatabaseError(f"{redacted(database)}: {error}") from error
        except psycopg.errors.UndefinedFile as error:
            raise DatabaseError(
                f"{redacted(database)}: the pgvector extension is not installed on this server"
                f" ({error})"
            ) from error
        check_schema(recorded, database)
        return recorded


def check_schema(recorded: dict, database: str) -> None:
    version = recorded.get("schema_version")
    if version is None:
        raise DatabaseError(f"{redacted(database)}: not an acr database; run `acr db init` first")
    if version != SCHEMA_VERSION:
        raise DatabaseError(
            f"{redacted(database)}: schema version {version}, this acr reads {SCHEMA_VERSION}"
        )


def read_meta(db: Any) -> dict[str, Any]:
    """Everything acr_meta holds (an empty dict before ``acr db init``)."""
    exists = db.execute("SELECT to_regclass('acr_meta') IS NOT NULL").fetchone()[0]
    if not exists:
        return {}
    return dict(db.execute("SELECT key, value FROM acr_meta").fetchall())


def write_meta(db: Any, key: str, value: Any) -> None:
    db.execute(
        "INSERT INTO acr_meta (key, value) VALUES (%s, %s::jsonb)"
        " ON CONFLICT (key) DO UPDATE SET value = EXCLUDED.value",
        (key, json.dumps(value)),
    )


def bump_version(db: Any) -> int:
    """Count a change of the catalog (inside the writer's transaction). The row lock also
    makes writers take turns: a second one waits for the first to commit."""
    row = db.execute(
        "UPDATE acr_meta SET value = to_jsonb(value::text::bigint + 1) WHERE key = 'version'"
        " RETURNING value"
    ).fetchone()
    return int(row[0])
