"""Data sources by name, and ``acr data prepare``: a source's tracks as cached manifest tables.

The registry maps a name to a DataModule class path, imported only when that source is used.
:func:`prepare_manifests` lists and probes a source's files as its DataModule does for training
(:meth:`CatalogDataModule.catalog_tables`: header reads and a tail decode, no full decode) and
writes ``catalog.csv`` (every usable reference track), ``train.csv``, ``val.csv``, ``test.csv``
(its rows per split) and ``skipped.csv``. ``settings.json``, written last, marks a finished set
and holds a digest of the inputs, so a second run with the same inputs reuses it.
"""

from __future__ import annotations

import hashlib
import importlib
import inspect
import json
import os
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pandas as pd

from acr.data.manifests import SPLITS, ManifestError, read_table, validate_tracks, write_table
from acr.datamodules.base import SETTINGS_FILE, ACRDataModule
from acr.datamodules.catalog import CatalogDataModule
from acr.files import SKIPPED_FILE, write_json

CATALOG_FILE = "catalog.csv"
SPLIT_FILES = {split: f"{split}.csv" for split in SPLITS}
# Bump when the layout or columns of the prepared tables change: old caches are then rebuilt.
MANIFEST_VERSION = 1


@dataclass(frozen=True)
class Source:
    """A data source: its DataModule and the ``__init__`` argument that ROOT fills."""

    class_path: str
    root_argument: str = "root"
    description: str = ""

    def load(self) -> type[ACRDataModule]:
        module, name = self.class_path.rsplit(".", 1)
        try:
            return getattr(importlib.import_module(module), name)
        except (ImportError, AttributeError) as error:
            raise ValueError(f"source: {self.class_path} cannot be loaded ({error})") from error


SOURCES = {
    "fma": Source("acr.datamodules.fma.FMADataModule", description="Free Music Archive"),
    "mtg_jamendo": Source(
        "acr.datamodules.mtg_jamendo.MTGJamendoDataModule", description="MTG-Jamendo"
    ),
    "folder": Source("acr.datamodules.folder.FolderDataModule", description="any folder of audio"),
    "business": Source(
        "acr.datamodules.business.BusinessDataModule", "export", "a business catalog export"
    ),
}


def source_options(name: str) -> dict[str, inspect.Parameter]:
    """The options a source adds to its DataModule base (``subset``, ``split``, ``mapping``...)."""
    source = _source(name)
    shared = set(inspect.signature(CatalogDataModule.__init__).parameters)
    shared |= set(inspect.signature(ACRDataModule.__init__).parameters)
    parameters = inspect.signature(source.load().__init__).parameters
    return {
        key: parameter
        for key, parameter in parameters.items()
        if key not in shared | {source.root_argument}
        and parameter.kind not in (parameter.VAR_KEYWORD, parameter.VAR_POSITIONAL)
    }


def make_source(
    name: str, root: str | Path, options: dict[str, Any] | None = None, **settings: Any
) -> ACRDataModule:
    """The source's DataModule on ``root``; ``options`` (None values ignored) are checked by name.

    ``settings`` go to the DataModule unchecked (``probe_workers``; ``data_dir``, which a folder
    source leaves out of its listing).
    """
    source = _source(name)
    accepted = source_options(name)
    chosen = {key: value for key, value in (options or {}).items() if value is not None}
    for key in chosen:
        if key not in accepted:
            raise ValueError(
                f"--{key}: not an option of source {name!r} "
                f"(its options: {', '.join(accepted) or 'none'})"
            )
    return source.load()(**{source.root_argument: str(root)}, **chosen, **settings)


def source_tables(
    name: str, root: str | Path, options: dict[str, Any] | None = None, **settings: Any
) -> tuple[pd.DataFrame, pd.DataFrame]:
    """(usable reference tracks, skipped tracks) of a source on ``root``, without queries."""
    return catalog_source(name, root, options, **settings).catalog_tables()


def catalog_source(
    name: str, root: str | Path, options: dict[str, Any] | None = None, **settings: Any
) -> CatalogDataModule:
    """:func:`make_source` for sources that list a catalog of files (all registered ones)."""
    datamodule = make_source(name, root, options, **settings)
    if not isinstance(datamodule, CatalogDataModule):
        raise ValueError(f"source {name!r}: {type(datamodule).__name__} lists no catalog of files")
    return datamodule


@dataclass
class Prepared:
    """What ``prepare_manifests`` wrote (or found cached) in ``directory``."""

    directory: Path
    catalog: pd.DataFrame
    skipped: pd.DataFrame
    reused: bool
    seconds: float
    files: dict[str, Path] = field(default_factory=dict)

    def split_summary(self) -> list[tuple[str, int, float]]:
        """(split, tracks, hours) for each split and the whole catalog."""
        rows = []
        for split in SPLITS:
            chosen = self.catalog[self.catalog["split"] == split]
            rows.append((split, len(chosen), chosen["duration_s"].sum() / 3600))
        rows.append(("catalog", len(self.catalog), self.catalog["duration_s"].sum() / 3600))
        return rows


def prepare_manifests(
    source: str,
    root: str,
    output: str,
    options: dict[str, Any] | None = None,
    probe_workers: int | None = None,
    force: bool = False,
) -> Prepared:
    """Write a source's manifests: catalog.csv, train.csv, val.csv, test.csv, skipped.csv.

    The catalog holds every usable reference track, from headers and a tail decode of each
    file. A second run with the same inputs reuses them (settings.json): the cache key covers the
    source, its options, the listed tracks (so the metadata) and each listed file's size and
    modification time; any change to them rebuilds.

    Args:
        source: the data source (fma, mtg_jamendo, folder or business).
        root: where the source's audio (or, for business, its export file) lives.
        output: the manifest directory.
        options: the source's own settings (its DataModule's arguments: ``subset``, ``split``,
            ``mapping``...); on the command line each is a flag of its own.
        probe_workers: threads reading file headers (default: one per CPU core).
        force: rebuild even when the cached manifests are current.
    """
    start = time.perf_counter()
    root, output = Path(root).expanduser().absolute(), Path(output).expanduser().absolute()
    if not root.exists():
        raise FileNotFoundError(f"ROOT: {root} does not exist")
    datamodule = catalog_source(
        source, root, options, data_dir=str(output), probe_workers=probe_workers
    )
    listed = datamodule.list_tracks()
    settings = {
        "manifest_version": MANIFEST_VERSION,
        "source": source,
        "class_path": SOURCES[source].class_path,
        "root": str(root),
        "options": {key: value for key, value in (options or {}).items() if value is not None},
        "inputs_sha1": _inputs_digest(listed),
    }
    files = {"catalog": output / CATALOG_FILE, "skipped": output / SKIPPED_FILE}
    files |= {split: output / file_name for split, file_name in SPLIT_FILES.items()}
    if not force and _cached(output, settings, files):
        catalog, skipped = read_table(files["catalog"]), read_table(files["skipped"])
        return Prepared(output, catalog, skipped, True, time.perf_counter() - start, files)
    catalog, skipped = datamodule.catalog_tables(listed)
    if catalog.empty:
        raise ManifestError(
            root, f"no usable track ({len(skipped)} skipped, e.g. {_first(skipped)})"
        )
    validate_tracks(catalog, root, check_files=False)
    output.mkdir(parents=True, exist_ok=True)
    (output / SETTINGS_FILE).unlink(missing_ok=True)  # the old set is no longer complete
    write_table(catalog, files["catalog"])
    for split in SPLITS:
        write_table(catalog[catalog["split"] == split], files[split])
    write_table(skipped, files["skipped"])
    settings["tracks"] = len(catalog)
    settings["skipped"] = len(skipped)
    write_json(output / SETTINGS_FILE, dict(sorted(settings.items())))  # last: marks a complete set
    return Prepared(output, catalog, skipped, False, time.perf_counter() - start, files)


def _source(name: str) -> Source:
    if name not in SOURCES:
        raise ValueError(f"source: unknown {name!r}; choose one of {', '.join(SOURCES)}")
    return SOURCES[name]


def _inputs_digest(listed: pd.DataFrame) -> str:
    """sha1 of the listed tracks, of each listed file's size and mtime (or its absence), and
    of the entries the listing rejected."""
    digest = hashlib.sha1("\t".join(map(str, listed.columns)).encode())
    text = listed.astype(str).map(_utf8)  # a non-UTF-8 file name hashes as \xNN escapes
    digest.update(pd.util.hash_pandas_object(text, index=False).to_numpy())
    for path in listed["path"]:
        try:
            stat = os.stat(path)
            digest.update(_utf8(f"{path}\0{stat.st_size}\0{stat.st_mtime_ns}\n").encode())
        except OSError:
            digest.update(_utf8(f"{path}\0missing\n").encode())
    for entry in listed.attrs.get("rejected", []):  # a new broken link rewrites skipped.csv
        digest.update(_utf8(f"{entry['path']}\0{entry['reason']}\n").encode())
    return digest.hexdigest()


def _utf8(text: str) -> str:
    """``text`` with the surrogate escapes of a non-UTF-8 file name (PEP 383) shown as
    ``\\xNN``, so it encodes; any other text is returned as it is (digests do not change)."""
    return text.encode(errors="surrogateescape").decode(errors="backslashreplace")


def _cached(output: Path, settings: dict[str, Any], files: dict[str, Path]) -> bool:
    marker = output / SETTINGS_FILE
    if not marker.is_file() or not all(path.is_file() for path in files.values()):
        return False
    try:
        cached = json.loads(marker.read_text())
    except json.JSONDecodeError:
        return False
    return all(cached.get(key) == value for key, value in settings.items())


def _first(skipped: pd.DataFrame) -> str:
    if skipped.empty:
        return "none listed"
    return f"{skipped['path'].iloc[0]}: {skipped['reason'].iloc[0]}"
