"""FMADataModule: the Free Music Archive (Defferrard et al. 2017) as published, with its own splits.

The layout is ``fma_<subset>/NNN/NNNNNN.mp3`` (NNN: the first three digits of the zero-padded
track id) beside ``fma_metadata/tracks.csv``, a table with a two-level column header
(``set/subset``, ``set/split``, ``track/genre_top``, ``artist/id``, ...). Subsets are nested:
small ⊂ medium ⊂ large, and full holds the untrimmed recordings of large. A few published mp3s
have no audio (fma_small 099134, 108925, 133297); they are skipped and reported.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pandas as pd

from acr.data.manifests import ManifestError
from acr.datamodules.catalog import NO_LABEL, CatalogDataModule

SUBSETS = ("small", "medium", "large", "full")
# set/subset names the smallest subset a track is in; full holds every track, like large.
SUBSET_SIZES = {"small": 0, "medium": 1, "large": 2, "full": 2}
SPLITS = {"training": "train", "validation": "val", "test": "test"}
COLUMNS = {
    ("set", "subset"): "subset",
    ("set", "split"): "split",
    ("track", "genre_top"): "genre",
    ("artist", "id"): "artist_id",
}


class FMADataModule(CatalogDataModule):
    """FMA audio and metadata under ``root``; FMA's training/validation/test split.

    Tracks carry ``genre`` (FMA's top genre, a query bucket) and ``artist_id``.

    Args:
        root: the folder that holds ``fma_<subset>/`` (and ``fma_metadata/`` by default).
        subset: small (8,000 clips of 30 s), medium (25,000), large (106,574) or full (the
            untrimmed recordings of large).
        metadata_dir: the folder with ``tracks.csv`` (default: ``root/fma_metadata``).
    """

    source = "fma"
    label_columns = ("genre",)

    def __init__(
        self,
        data_dir: str = "data/fma",
        root: str = "data/fma",
        subset: str = "small",
        metadata_dir: str | None = None,
        **kwargs: Any,
    ) -> None:
        if subset not in SUBSETS:
            raise ValueError(f"subset: unknown {subset!r}; choose one of {SUBSETS}")
        super().__init__(data_dir=data_dir, root=root, **kwargs)
        self.subset = subset
        self.metadata_dir = (
            Path(metadata_dir).expanduser().absolute()
            if metadata_dir
            else self.root / "fma_metadata"
        )

    def manifest_settings(self) -> dict[str, Any]:
        return {
            **super().manifest_settings(),
            "subset": self.subset,
            "metadata_dir": str(self.metadata_dir),
        }

    def list_tracks(self) -> pd.DataFrame:
        audio_dir = self.root / f"fma_{self.subset}"
        if not audio_dir.is_dir():
            raise FileNotFoundError(
                f"{audio_dir}: no such folder (unzip fma_{self.subset}.zip in root)"
            )
        metadata = read_fma_tracks(self.metadata_dir / "tracks.csv")
        sizes = metadata["subset"].map(SUBSET_SIZES)
        chosen = metadata[sizes <= SUBSET_SIZES[self.subset]]
        unknown = sorted(set(chosen["split"].fillna("(empty)")) - set(SPLITS))
        if unknown:
            raise ManifestError(
                self.metadata_dir / "tracks.csv",
                f"set/split: unknown value(s) {unknown}; expected one of {list(SPLITS)}",
            )
        ids = [f"{track_id:06d}" for track_id in chosen.index]
        return pd.DataFrame(
            {
                "track_id": ids,
                "path": [str(audio_dir / track_id[:3] / f"{track_id}.mp3") for track_id in ids],
                "split": chosen["split"].map(SPLITS).to_numpy(),
                "genre": chosen["genre"].fillna(NO_LABEL).to_numpy(),
                "artist_id": chosen["artist_id"].to_numpy(),
            }
        )


def read_fma_tracks(path: Path) -> pd.DataFrame:
    """The columns acr uses from FMA's ``tracks.csv``, indexed by the integer track id."""
    if not path.is_file():
        raise ManifestError(
            path, "file does not exist (unzip fma_metadata.zip, or set metadata_dir)"
        )
    # Three header rows: top level (album, artist, set, track), field, and the index name.
    table = pd.read_csv(path, index_col=0, header=[0, 1], low_memory=False)
    missing = [column for column in COLUMNS if column not in table.columns]
    if missing:
        raise ManifestError(
            path, f"missing FMA column(s) {missing}; is it fma_metadata/tracks.csv?"
        )
    table = table[list(COLUMNS)]
    table.columns = list(COLUMNS.values())
    return table
