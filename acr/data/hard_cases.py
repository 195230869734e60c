"""What training does about hard cases: which pairs it draws more often, weighs more, and
which tracks it puts in one batch as each other's negatives.

A training track's *type* is the hard case it stands for: the ``hard_case`` column of the
tracks manifest where a source writes one (the synthetic source marks the songs that have a
second version ``confused``, the bucket their queries fall in), else a business export's mapped
``type`` (live, cover, remix, humming), else ``none``. A track's *group* (the ``group``
column: a song and its versions, an album, an artist) is what hard negatives are drawn by.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import pandas as pd

NO_TYPE = "none"
TYPE_COLUMNS = ("hard_case", "type")  # the first a manifest has is a track's type
GROUP_COLUMN = "group"


@dataclass(frozen=True)
class HardCases:
    """Hard-case-aware training (the default changes nothing).

    Args:
        sampling: relative probability of drawing a training track of each type (1 for the
            types not named): ``{confused: 4}`` draws a track that has versions 4 times as often.
        loss_weights: weight of a pair's NT-Xent terms by its track's type (1 for the types
            not named); the loss is the weighted mean, so only the ratios matter.
        negatives: share of each batch drawn as whole groups of two or more training tracks
            (a song and its versions, cut at the same moment), each group's pairs the hardest
            negatives of each other; 0 draws every pair on its own.
    """

    sampling: dict[str, float] = field(default_factory=dict)
    loss_weights: dict[str, float] = field(default_factory=dict)
    negatives: float = 0.0

    def __post_init__(self) -> None:
        for name, weights in (("sampling", self.sampling), ("loss_weights", self.loss_weights)):
            bad = {kind: w for kind, w in weights.items() if not (w >= 0 and np.isfinite(w))}
            if bad:
                raise ValueError(f"hard_cases.{name}: weights must be finite and >= 0, got {bad}")
        if not 0.0 <= self.negatives <= 1.0:
            raise ValueError(f"hard_cases.negatives must be in [0, 1], got {self.negatives}")

    def track_probabilities(self, tracks: pd.DataFrame) -> np.ndarray | None:
        """Each training track's probability of being drawn; None draws uniformly."""
        if not self.sampling:
            return None
        weights = track_types(tracks).map(lambda kind: self.sampling.get(kind, 1.0))
        weights = weights.to_numpy(dtype=float)
        if weights.sum() <= 0:
            raise ValueError(
                f"hard_cases.sampling {self.sampling} gives every training track weight 0"
            )
        return weights / weights.sum()

    def pair_weights(self, tracks: pd.DataFrame) -> np.ndarray | None:
        """Each training track's pair weight in the loss; None leaves the loss unweighted."""
        if not self.loss_weights:
            return None
        types = track_types(tracks)
        return types.map(lambda kind: self.loss_weights.get(kind, 1.0)).to_numpy(dtype=float)

    def groups(self, tracks: pd.DataFrame) -> list[np.ndarray]:
        """Positions of the training tracks of each group of two or more (what a batch's hard
        negatives are drawn from); empty when ``negatives`` is 0 or no group has two."""
        if self.negatives == 0:
            return []
        if GROUP_COLUMN not in tracks:
            raise ValueError(
                "hard_cases.negatives needs a 'group' column in the tracks manifest (a song and"
                " its versions, an album); this source writes none"
            )
        positions = pd.Series(np.arange(len(tracks)), index=tracks[GROUP_COLUMN].to_numpy())
        groups = [
            members.to_numpy()
            for _, members in positions.groupby(level=0, sort=True)
            if len(members) >= 2
        ]
        if not groups:
            raise ValueError(
                "hard_cases.negatives: no group has two training tracks (no versions, no album"
                " of two songs) to be each other's negatives"
            )
        return groups


def track_types(tracks: pd.DataFrame) -> pd.Series:
    """Each track's type (see the module's docstring), ``none`` where it has none."""
    for column in TYPE_COLUMNS:
        if column in tracks:
            return tracks[column].astype("string").fillna(NO_TYPE).reset_index(drop=True)
    return pd.Series([NO_TYPE] * len(tracks), dtype="string")
