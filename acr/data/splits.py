"""Seeded train/val/test splits that keep a track, or a group of tracks, inside one split.

Units are ordered by a hash of (seed, unit), so a unit's place depends on neither the file
order nor the other units, and a grown catalog moves few of them. Folder and business sources
split this way (acr.datamodules.folder, acr.datamodules.business).
"""

from __future__ import annotations

import hashlib

import numpy as np
import pandas as pd

SPLIT_ORDER = ("val", "test", "train")  # seeded_split fills val first, so val is never empty


def check_fractions(val_fraction: float, test_fraction: float) -> None:
    """Clear errors for split fractions that leave a split impossible."""
    if not 0 < val_fraction < 1:
        raise ValueError(f"val_fraction must be in (0, 1), got {val_fraction}")
    if not 0 <= test_fraction < 1:
        raise ValueError(f"test_fraction must be in [0, 1), got {test_fraction}")
    if val_fraction + test_fraction >= 1:
        raise ValueError(
            f"val_fraction + test_fraction = {val_fraction + test_fraction:g} leaves nothing to"
            " train on; keep the sum below 1"
        )


def unit_keys(track_ids: pd.Series, groups: pd.Series | None = None) -> pd.Series:
    """What stays whole in a split: the group where there is one, else the track itself."""
    keys = "track:" + track_ids.astype(str)
    if groups is None:
        return keys
    return ("group:" + groups.astype("string")).fillna(keys).astype(str)


def seeded_split(
    units: pd.Series,
    val_fraction: float,
    test_fraction: float,
    seed: int,
    first: pd.Series | None = None,
) -> pd.Series:
    """``train``/``val``/``test`` per row, keeping every unit (track or group) whole.

    Units are ordered by a hash of (seed, unit), so a unit's place depends on neither the file
    order nor the other units, and a grown catalog moves few of them. Walking that order, units
    fill val up to ``val_fraction`` of the rows, then test, then train. Units where ``first`` is
    true for some row go to the front (business exports: references that have queries).
    """
    sizes = units.value_counts(sort=False)
    # surrogateescape: a unit from a non-UTF-8 file name hashes as its own bytes
    digests = {
        unit: hashlib.sha1(f"{seed}\0{unit}".encode(errors="surrogateescape")).hexdigest()
        for unit in sizes.index
    }
    preferred = first.groupby(units).any() if first is not None else pd.Series(dtype=bool)
    order = sorted(sizes.index, key=lambda unit: (not preferred.get(unit, False), digests[unit]))
    ordered = sizes[order].to_numpy()
    starts = np.cumsum(ordered) - ordered
    boundaries = np.array([val_fraction, val_fraction + test_fraction]) * len(units)
    chosen = np.array(SPLIT_ORDER)[np.searchsorted(boundaries, starts, side="right")]
    return units.map(dict(zip(order, chosen)))
