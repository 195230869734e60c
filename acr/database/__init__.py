"""The catalog in PostgreSQL with pgvector, shared by any number of ``acr serve`` replicas.

An index directory (acr.retrieval.store) stays the place an index is built: decoding,
extraction, resume after a kill. ``acr db push`` (and ``acr index --database``) then copies its
tracks into the database, one transaction per batch of tracks, so a kill leaves every track
either wholly in the database or not at all, and a rerun adds what is missing.

- schema.py: the tables, ``acr db init``, connections that fail fast.
- push.py: an index directory's tracks into the database; removing tracks.
- engines.py: the fingerprint and embedding engines answering from the database, with the
  same voting code as the file engines (so the same answers).
"""
