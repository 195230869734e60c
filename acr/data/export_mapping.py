"""The YAML mapping that turns a business's asset export into manifest fields.

It says which export column is which manifest field (``columns``), which columns become query
buckets (``labels``) and how export values translate (``values``); see
configs/business_mapping.yaml. :func:`read_mapping` checks it and names the file and the key of
anything wrong (acr.datamodules.business applies it).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pandas as pd
import yaml

from acr.data.manifests import QUERY_DETAIL_COLUMNS, ROLES, SPLITS, TRACK_COLUMNS, ManifestError

MAPPING_KEYS = ("table", "audio_root", "columns", "labels", "values")
FIELDS = ("track_id", "path", "role", "type", "reference", "split", "group")
REQUIRED_FIELDS = ("track_id", "path")
# What a recording is; a query's type becomes its hard_case bucket.
TYPES = ("original", "live", "cover", "remix", "edit", "clip", "humming", "instrumental")
# What the mapping's ``values`` may translate to (None: any name, so a business adds its types).
TARGETS: dict[str, tuple[str, ...] | None] = {"role": ROLES, "type": None, "split": SPLITS}
# Without a ``values`` entry for a field, the export must use these names (ignoring case); any
# other value, like one missing from a ``values`` entry, rejects its row.
DEFAULTS = {"role": ROLES, "type": TYPES, "split": SPLITS}


@dataclass(frozen=True)
class ExportMapping:
    """A validated mapping file: manifest field -> export column, and value translations."""

    path: Path
    columns: dict[str, str]
    labels: dict[str, str] = field(default_factory=dict)
    values: dict[str, dict[str | None, str]] = field(default_factory=dict)
    table: str | None = None
    audio_root: str | None = None

    def check_columns(self, export: pd.DataFrame, export_path: Path) -> None:
        """A clear error naming the mapping key whose column the export lacks."""
        named = [(f"columns.{key}", column) for key, column in self.columns.items()]
        named += [(f"labels.{key}", column) for key, column in self.labels.items()]
        for key, column in named:
            if column not in export.columns:
                raise ManifestError(
                    self.path,
                    f"{key}: {export_path.name} has no column {column!r};"
                    f" it has {list(export.columns)}",
                )

    def translate(self, name: str, raw: pd.Series) -> pd.Series:
        """Manifest values of ``name`` (role, type, split); None where the value is unknown."""
        known = self.values.get(name) or {_key(value): value for value in DEFAULTS[name]}
        return raw.map(lambda value: known.get(_key(value)))


def read_mapping(path: Path) -> ExportMapping:
    """Read and check a mapping file; errors name the file and the key."""
    if not path.is_file():
        raise ManifestError(path, "mapping file does not exist")
    try:
        raw = yaml.safe_load(path.read_text())
    except yaml.YAMLError as error:
        raise ManifestError(path, f"not valid YAML ({error})") from error
    if not isinstance(raw, dict):
        raise ManifestError(path, f"expected a mapping with the keys {MAPPING_KEYS}")
    _require_known(raw, MAPPING_KEYS, "", path)
    columns = {key: value for key, value in _section(raw, "columns", path).items() if value}
    _require_known(columns, FIELDS, "columns.", path)
    for key in REQUIRED_FIELDS:
        if key not in columns:
            raise ManifestError(path, f"columns.{key}: required (the export column with it)")
    if "role" in columns and "reference" not in columns:
        raise ManifestError(path, "columns.reference: required with columns.role (queries name it)")
    labels = raw.get("labels") or {}
    if isinstance(labels, list):
        labels = {name: name for name in labels}
    if not isinstance(labels, dict):
        raise ManifestError(path, "labels: expected a list of columns or {label: column}")
    taken = {*TRACK_COLUMNS, *QUERY_DETAIL_COLUMNS, *FIELDS, "in_val_catalog"}
    taken |= {"hard_case", "length_s", "degradation"}  # query buckets acr sets
    for name in labels:
        if name in taken:
            raise ManifestError(path, f"labels.{name}: the manifests already have this column")
    values = _section(raw, "values", path)
    _require_known(values, tuple(TARGETS), "values.", path)
    translations = {}
    for name, table in values.items():
        if name not in columns:
            raise ManifestError(path, f"values.{name}: columns.{name} is not mapped")
        if not isinstance(table, dict):
            raise ManifestError(path, f"values.{name}: expected {{export value: {name}}}")
        allowed = TARGETS[name]
        for source, target in table.items():
            if not target or (allowed and target not in allowed):
                expected = f"one of {allowed}" if allowed else "a name"
                raise ManifestError(path, f"values.{name}.{source}: {target!r} is not {expected}")
        translations[name] = {_key(source): str(target) for source, target in table.items()}
    return ExportMapping(
        path=path,
        columns={key: str(value) for key, value in columns.items()},
        labels={str(name): str(column) for name, column in labels.items()},
        values=translations,
        table=raw.get("table"),
        audio_root=raw.get("audio_root"),
    )


def _section(raw: dict, key: str, path: Path) -> dict:
    section = raw.get(key) or {}
    if not isinstance(section, dict):
        raise ManifestError(path, f"{key}: expected a mapping, got {section!r}")
    return section


def _require_known(section: dict, known: tuple[str, ...], prefix: str, path: Path) -> None:
    unknown = [key for key in section if key not in known]
    if unknown:
        raise ManifestError(path, f"{prefix}{unknown[0]}: unknown key; expected one of {known}")


def _key(value: Any) -> str | None:
    """How values are matched: text without surrounding spaces, ignoring case; None is empty."""
    if value is None or (isinstance(value, float) and pd.isna(value)):
        return None
    if isinstance(value, bool):  # YAML reads an unquoted yes/true as a bool
        value = "true" if value else "false"
    text = str(value).strip().casefold()
    return text or None
