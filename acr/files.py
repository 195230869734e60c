"""Files written whole or not at all, content digests, and the newest of a set of files.

Every file acr writes for another process to read (tables, index manifests, heartbeats, results,
decoded audio) goes through :func:`replacing`: it is written under a temporary name in the same
folder and renamed over the destination, which POSIX makes atomic, so a reader or a ``kill -9``
at any moment sees the old file or the new one, never half of one.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

CHUNK_BYTES = 1 << 20


@contextmanager
def replacing(path: str | Path) -> Iterator[Path]:
    """Yield a temporary path beside ``path`` (same suffix, so writers that go by the
    extension still work); when the block ends without an error it replaces ``path``.

    The temporary may be a file or a folder; on an error it is removed and ``path`` is left as
    it was.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    temporary = path.with_name(f".{path.stem}.{os.getpid()}.tmp{path.suffix}")
    try:
        yield temporary
        os.replace(temporary, path)
    except BaseException:
        if temporary.is_dir():
            shutil.rmtree(temporary, ignore_errors=True)
        else:
            temporary.unlink(missing_ok=True)
        raise


def write_text(path: str | Path, text: str) -> None:
    """Write ``text`` to ``path`` atomically (see :func:`replacing`)."""
    with replacing(path) as temporary:
        temporary.write_text(text)


def write_json(path: str | Path, content: object, indent: int | None = 2) -> None:
    """Write ``content`` as JSON (and a final newline) to ``path`` atomically; numpy and torch
    scalars are written as numbers."""
    write_text(path, json.dumps(content, indent=indent, default=_plain) + "\n")


def _plain(value: object) -> object:
    """JSON for numpy and torch scalars (``item()``); text for anything else."""
    return value.item() if hasattr(value, "item") else str(value)


def sha256_file(path: str | Path) -> str:
    """Hex sha256 of a file's content, read in chunks (checkpoints can be gigabytes)."""
    digest = hashlib.sha256()
    with open(path, "rb") as stream:
        while chunk := stream.read(CHUNK_BYTES):
            digest.update(chunk)
    return digest.hexdigest()


def newest(directory: str | Path, pattern: str) -> Path | None:
    """The most recently modified file under ``directory`` matching ``pattern``, or None."""
    found = sorted(Path(directory).glob(pattern), key=lambda path: path.stat().st_mtime)
    return found[-1] if found else None
