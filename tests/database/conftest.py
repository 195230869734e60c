"""tests/database runs against a real PostgreSQL server (fixtures_postgres)."""

from fixtures_postgres import database, postgres  # noqa: F401 (fixtures)
