"""A fit's checkpoints on disk: written whole or not at all, and checked before a resume.

Lightning's own save (``TorchCheckpointIO`` through fabric's ``_atomic_save``) writes into an
fsspec transaction whose temporary file lies in ``$TMPDIR``; when that is another filesystem than
the run (a tmpfs ``/tmp``), the commit truncates the destination and copies the bytes onto it,
so a kill during the copy leaves ``last.ckpt`` empty or cut short. :class:`AtomicCheckpointIO`
writes beside the destination and renames (acr.files.replacing), and :func:`usable_checkpoint`
lets a resume step over a checkpoint that is broken all the same (saved by an older acr, or
damaged on disk).
"""

from __future__ import annotations

import os
import zipfile
import zlib
from pathlib import Path
from typing import Any

import torch
from lightning.fabric.utilities.cloud_io import _is_local_file_protocol
from lightning.pytorch.plugins.io import TorchCheckpointIO

from acr.files import remove_leftovers, replacing

CHECKPOINT_SUFFIX = ".ckpt"


class CheckpointError(Exception):
    """A checkpoint that cannot be used, with no whole one to use instead (one line)."""


class AtomicCheckpointIO(TorchCheckpointIO):
    """``TorchCheckpointIO`` whose saves to local files are atomic: each checkpoint is written
    to a temporary file beside its destination, flushed to disk, and renamed over it, so a kill
    at any moment leaves the previous checkpoint or the new one, whole.

    acr.cli.training gives it to every fit whose config names no CheckpointIO of its own;
    loading and removing checkpoints stay Lightning's. Remote paths keep Lightning's save.
    """

    def save_checkpoint(
        self, checkpoint: dict[str, Any], path: str | Path, storage_options: Any | None = None
    ) -> None:
        if storage_options is not None or not _is_local_file_protocol(path):
            super().save_checkpoint(checkpoint, path, storage_options)  # refuses storage_options
            return
        with replacing(path) as temporary, open(temporary, "wb") as stream:
            torch.save(checkpoint, stream)
            stream.flush()
            os.fsync(stream.fileno())  # on disk before the rename makes it the checkpoint
        remove_leftovers(path)  # temporaries of saves killed before this one


def checkpoint_problem(path: str | Path) -> str | None:
    """Why ``path`` is not a whole checkpoint (a few words), or None when it is one.

    torch saves a zip archive whose central directory is written last, so a save cut short
    lacks it; reading the directory and the archive's pickle (its CRC checked) costs a few
    reads however large the checkpoint. A folder (a sharded checkpoint) is not judged here.
    """
    path = Path(path)
    try:
        size = path.stat().st_size
    except FileNotFoundError:
        return "no such file"
    except OSError as error:
        return error.strerror or type(error).__name__
    if path.is_dir():
        return None
    if size == 0:
        return "0 bytes"
    try:
        with zipfile.ZipFile(path) as archive:
            pickles = [name for name in archive.namelist() if name.rpartition("/")[2] == "data.pkl"]
            if not pickles:
                return f"{size} bytes, a zip archive but not a torch checkpoint"
            archive.read(pickles[0])
    except (zipfile.BadZipFile, zlib.error, EOFError, ValueError):
        return f"{size} bytes, cut short or not a torch checkpoint"
    except OSError as error:
        return error.strerror or type(error).__name__
    return None


def newest_whole_checkpoint(directory: str | Path) -> Path | None:
    """The most recently written whole ``*.ckpt`` in ``directory`` (temporaries, whose names
    start with a dot, left out), or None."""
    directory = Path(directory)
    if not directory.is_dir():
        return None
    found = [
        path
        for path in directory.glob(f"*{CHECKPOINT_SUFFIX}")
        if not path.name.startswith(".") and path.is_file()
    ]
    for path in sorted(found, key=_modified, reverse=True):
        if checkpoint_problem(path) is None:
            return path
    return None


def _modified(path: Path) -> float:
    try:
        return path.stat().st_mtime
    except OSError:  # removed meanwhile
        return float("-inf")


def usable_checkpoint(path: str | Path, fall_back: bool = True) -> tuple[Path, str | None]:
    """The checkpoint to load for ``path``, and a warning when it is not ``path``.

    ``path`` itself when it is whole; else, with ``fall_back``, the newest whole checkpoint in
    its folder, with a one-line warning naming both. CheckpointError (one line naming the file)
    when ``path`` does not exist, or is broken and there is nothing to fall back on.
    """
    path = Path(path)
    problem = checkpoint_problem(path)
    if problem is None:
        return path, None
    if not path.exists():
        raise CheckpointError(f"{path}: no such checkpoint")
    instead = newest_whole_checkpoint(path.parent) if fall_back else None
    if instead is None:
        remedy = (
            f"{path.parent} holds no whole checkpoint to resume from; delete {path.name} (or fit "
            "without --ckpt_path) to start afresh"
            if fall_back
            else "name another checkpoint"
        )
        raise CheckpointError(f"{path} is not a whole checkpoint ({problem}): {remedy}")
    warning = f"{path} is not a whole checkpoint ({problem}); resuming from {instead} instead"
    return instead, warning
