"""Files written whole or not at all, content digests, and the newest of a set of files.

Every file acr writes for another process to read (tables, index manifests, heartbeats, results,
decoded audio) goes through :func:`replacing`: it is written under a temporary name in the same
folder and renamed over the destination, which POSIX makes atomic, so a reader or a ``kill -9``
at any moment sees the old file or the new one, never half of one.
"""

from __future__ import annotations

import glob
import hashlib
import json
import os
import re
import shutil
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

CHUNK_BYTES = 1 << 20
# What a step could not use, a row each with the reason: the skipped.csv of an index, of
# prepared manifests and of a query set.
SKIPPED_FILE = "skipped.csv"
SKIPPED_COLUMNS = ["track_id", "path", "reason"]
SLUG_CHARACTERS = 48  # of a file name made from an id (safe_file_name)


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


def remove_leftovers(path: str | Path) -> None:
    """Remove the temporaries of ``path`` that :func:`replacing` left when its process was
    killed (``.STEM.PID.tmpSUFFIX`` of a process that no longer runs): large files, such as
    checkpoints, would otherwise pile up, one per kill."""
    path = Path(path)
    prefix, suffix = f".{path.stem}.", f".tmp{path.suffix}"
    for temporary in path.parent.glob(f"{glob.escape(prefix)}*{glob.escape(suffix)}"):
        pid = temporary.name[len(prefix) : -len(suffix)]
        if pid.isdigit() and int(pid) != os.getpid() and not process_exists(int(pid)):
            temporary.unlink(missing_ok=True)


def process_exists(pid: int) -> bool:
    """Whether process ``pid`` exists on this machine and is not a zombie (dead, waiting to be
    reaped): the writer of a temporary file (its name holds the pid) or of a heartbeat."""
    try:
        os.kill(pid, 0)  # signal 0 only asks whether the process exists
    except ProcessLookupError:
        return False
    except PermissionError:  # another user's
        return True
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except (OSError, IndexError):  # no /proc (not Linux), or it just went
        return True
    return state not in ("Z", "X")


def write_text(path: str | Path, text: str) -> None:
    """Write ``text`` to ``path`` atomically (see :func:`replacing`)."""
    with replacing(path) as temporary:
        temporary.write_text(text)


def write_json(path: str | Path, content: object, indent: int | None = 2) -> None:
    """Write ``content`` as JSON (and a final newline) to ``path`` atomically; numpy and torch
    scalars are written as numbers."""
    write_text(path, json.dumps(content, indent=indent, default=json_default) + "\n")


def json_default(value: object) -> object:
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


def output_path(path: str | Path, folder: bool = False) -> Path:
    """``path`` checked, before any work, as somewhere to write a file (``folder``: a folder):
    not an existing folder (an existing file), and no existing path above it a file. Raises a
    ValueError naming it, so that a mistyped ``--output`` costs one line, not a finished run."""
    path = Path(path)
    if path.exists() and path.is_dir() != folder:
        wanted, found = ("folder", "file") if folder else ("file", "folder")
        raise ValueError(f"output {path}: is a {found}; expected a {wanted}")
    above = next((parent for parent in path.absolute().parents if parent.exists()), None)
    if above is not None and not above.is_dir():
        raise ValueError(f"output {path}: {above} is a file, not a folder")
    return path


def safe_file_name(name: str, suffix: str = "") -> str:
    """A file name made from any text (a track or query id): its letters, digits, ``-``,
    ``_`` and ``.`` (no leading dot, at most 48 characters), then a hash of the whole text, so
    no name can point outside its folder and two different texts never share one."""
    slug = re.sub(r"[^\w.-]+", "_", name, flags=re.ASCII).lstrip(".")[:SLUG_CHARACTERS]
    digest = hashlib.sha1(name.encode("utf-8", "surrogatepass")).hexdigest()[:16]
    return f"{slug}-{digest}{suffix}" if slug else f"{digest}{suffix}"
