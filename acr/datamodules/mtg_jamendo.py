"""MTGJamendoDataModule: MTG-Jamendo (Bogdanov et al. 2019), official artist-disjoint splits.

Metadata are the published TSVs, ``splits/split-K/<tsv>-{train,validation,test}.tsv``, with the
columns ``TRACK_ID ARTIST_ID ALBUM_ID PATH DURATION`` and then one tag per field
(``genre---rock``, ``mood/theme---happy``, ``instrument---piano``). Audio lies under
``NN/ID.mp3`` as PATH says, or ``NN/ID.low.mp3`` in the low-quality download.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import pandas as pd

from acr.data.manifests import ManifestError
from acr.datamodules.catalog import NO_LABEL, CatalogDataModule

TSVS = (
    "autotagging",
    "autotagging_genre",
    "autotagging_instrument",
    "autotagging_moodtheme",
    "autotagging_top50tags",
)
SPLITS = (0, 1, 2, 3, 4)
PARTS = {"train": "train", "validation": "val", "test": "test"}
COLUMNS = ("TRACK_ID", "ARTIST_ID", "ALBUM_ID", "PATH", "DURATION", "TAGS")
TAG_SEPARATOR = "---"
# Tag categories that become bucket columns of tracks and queries.
LABELS = {"genre": "genre", "mood/theme": "mood"}


class MTGJamendoDataModule(CatalogDataModule):
    """MTG-Jamendo audio under ``root``; one of the five official splits of one TSV.

    Tracks carry ``genre`` and ``mood`` (query buckets), ``artist_id``, ``album_id`` and all
    ``tags``. A track's tags are listed alphabetically, so the first is arbitrary: the bucket is
    its tag of that category that is most common in the data set.

    Args:
        root: the folder with the audio folders ``00/`` ... ``99/``.
        split: which official split (0-4).
        tsv: which tag set's split files (autotagging holds every track).
        metadata_dir: the folder with ``splits/`` (default: root), e.g. the ``data/`` folder of a
            clone of github.com/MTG/mtg-jamendo-dataset.
    """

    source = "mtg_jamendo"
    label_columns = tuple(LABELS.values())

    def __init__(
        self,
        data_dir: str = "data/mtg_jamendo",
        root: str = "data/mtg_jamendo",
        split: int = 0,
        tsv: str = "autotagging",
        metadata_dir: str | None = None,
        **kwargs: Any,
    ) -> None:
        if split not in SPLITS:
            raise ValueError(f"split: unknown {split!r}; choose one of {SPLITS}")
        if tsv not in TSVS:
            raise ValueError(f"tsv: unknown {tsv!r}; choose one of {TSVS}")
        super().__init__(data_dir=data_dir, root=root, **kwargs)
        self.split = split
        self.tsv = tsv
        self.metadata_dir = (
            Path(metadata_dir).expanduser().absolute() if metadata_dir else self.root
        )

    def manifest_settings(self) -> dict[str, Any]:
        return {
            **super().manifest_settings(),
            "split": self.split,
            "tsv": self.tsv,
            "metadata_dir": str(self.metadata_dir),
        }

    def list_tracks(self) -> pd.DataFrame:
        split_dir = self.metadata_dir / "splits" / f"split-{self.split}"
        parts = [
            read_split_tsv(split_dir / f"{self.tsv}-{part}.tsv").assign(split=split)
            for part, split in PARTS.items()
        ]
        table = pd.concat(parts, ignore_index=True)
        counts = Counter(tag for tags in table["tags"] for tag in tags)
        return pd.DataFrame(
            {
                "track_id": table["TRACK_ID"],
                "path": [str(self._audio_path(path)) for path in table["PATH"]],
                "split": table["split"],
                **{
                    column: [_most_common(tags, category, counts) for tags in table["tags"]]
                    for category, column in LABELS.items()
                },
                "artist_id": table["ARTIST_ID"],
                "album_id": table["ALBUM_ID"],
                "tags": [",".join(tags) for tags in table["tags"]],
            }
        )

    def _audio_path(self, relative: str) -> Path:
        """``root/NN/ID.mp3``, or its low-quality twin ``NN/ID.low.mp3`` when only that exists."""
        path = self.root / relative
        low_quality = path.with_suffix(".low.mp3")
        return low_quality if not path.is_file() and low_quality.is_file() else path


def read_split_tsv(path: Path) -> pd.DataFrame:
    """One split file: the five fixed columns, and ``tags`` as a list per track."""
    if not path.is_file():
        raise ManifestError(path, "file does not exist (is metadata_dir the folder with splits/?)")
    lines = path.read_text().splitlines()
    header = lines[0].split("\t") if lines else []
    if tuple(header) != COLUMNS:
        raise ManifestError(path, f"header {header}; expected the columns {list(COLUMNS)}")
    rows = []
    for number, line in enumerate(lines[1:], start=2):
        if not line.strip():
            continue
        fields = line.split("\t")
        if len(fields) < len(COLUMNS) - 1:
            raise ManifestError(path, f"line {number}: {len(fields)} fields, expected at least 5")
        malformed = [tag for tag in fields[5:] if TAG_SEPARATOR not in tag]
        if malformed:
            raise ManifestError(path, f"line {number}: tag {malformed[0]!r} is not category---tag")
        rows.append([*fields[:5], fields[5:]])
    return pd.DataFrame(rows, columns=[*COLUMNS[:5], "tags"])


def _most_common(tags: Sequence[str], category: str, counts: Counter) -> str:
    """The track's ``category`` tag that is most frequent overall (ties: alphabetical)."""
    prefix = category + TAG_SEPARATOR
    candidates = sorted(tag for tag in tags if tag.startswith(prefix))
    if not candidates:
        return NO_LABEL
    return max(candidates, key=lambda tag: counts[tag])[len(prefix) :]
