"""Torch datasets over manifests: contrastive training pairs and retrieval windows."""

from __future__ import annotations

from collections.abc import Callable, Sequence

import numpy as np
import pandas as pd
import torch
from torch.utils.data import Dataset

from acr.audio import fit_length, window_starts
from acr.data.hard_cases import HardCases
from acr.data.manifests import QueryClip
from acr.data.pcm_cache import READ_PATH, read_segment

Augmentation = Callable[[np.ndarray, np.random.Generator], np.ndarray]

CATALOG, QUERY = 0, 1  # window kinds in a RetrievalWindowDataset


VIEW_MARGIN = 1.1  # views are read 10 % longer than a segment: room for a speed-up to crop


def pair_context_s(window_s: float, positive_offset_s: float) -> float:
    """The stretch of a track one training pair is cut from (views plus their offsets)."""
    return window_s * VIEW_MARGIN + 2 * positive_offset_s


class ContrastivePairDataset(Dataset):
    """Two views of the same moment of a random training track: the positives for NT-Xent.

    The anchor is the clean segment (what the catalog will hold); the positive is an augmented
    copy shifted by up to ``positive_offset_s`` (Chang et al. 2021), so the embedder learns to
    ignore degradations and window misalignment. Other pairs in the batch are the negatives.
    """

    def __init__(
        self,
        tracks: pd.DataFrame,
        sample_rate: int,
        window_s: float,
        examples_per_epoch: int,
        augmentation: Augmentation,
        positive_offset_s: float = 0.2,
        augment_anchor: bool = False,
        anchor_pools: Sequence[tuple[np.ndarray, np.ndarray]] | None = None,
        hard_cases: HardCases | None = None,
    ) -> None:
        """``anchor_pools``: per track, the starts a segment strategy prefers and their
        probabilities (acr.data.segments.strategies.anchor_pools); None or an empty pool draws
        uniformly. ``hard_cases``: which tracks are drawn more often, weighed more in the loss
        (a ``weight`` per pair), and drawn with their group as negatives (acr.data.hard_cases)."""
        if len(tracks) == 0:
            raise ValueError("no training tracks")
        if anchor_pools is not None and len(anchor_pools) != len(tracks):
            raise ValueError(f"{len(anchor_pools)} anchor pools for {len(tracks)} tracks")
        self.anchor_pools = anchor_pools
        self.paths = tracks.get(READ_PATH, tracks["path"]).tolist()
        self.durations_s = tracks["duration_s"].to_numpy(dtype=float)
        self.sample_rate = sample_rate
        self.window_samples = int(round(window_s * sample_rate))
        self.examples_per_epoch = examples_per_epoch
        self.augmentation = augmentation
        self.offset_samples = int(round(positive_offset_s * sample_rate))
        self.augment_anchor = augment_anchor
        # Read a little more than a segment: room for the offset and for a speed-up to crop.
        self.view_samples = int(self.window_samples * VIEW_MARGIN)
        self.context_samples = self.view_samples + 2 * self.offset_samples
        hard_cases = hard_cases or HardCases()
        self.track_probabilities = hard_cases.track_probabilities(tracks)
        self.pair_weights = hard_cases.pair_weights(tracks)
        self.negatives = hard_cases.negatives
        self.groups = hard_cases.groups(tracks)

    def __len__(self) -> int:
        return self.examples_per_epoch

    def __getitem__(self, index: int) -> dict[str, torch.Tensor]:
        rng = self._rng()
        if self.track_probabilities is None:
            track = int(rng.integers(len(self.paths)))
        else:
            track = int(rng.choice(len(self.paths), p=self.track_probabilities))
        return self._pair(track, self._start_s(track, rng), rng)

    def __getitems__(self, indices: list[int]) -> list[dict[str, torch.Tensor]]:
        """A batch (the DataLoader's fetcher asks for one at a time): with hard negatives, a
        share of it is whole groups of tracks cut at one moment, the rest drawn pair by pair."""
        if not self.groups:
            return [self[index] for index in indices]
        rng = self._rng()
        pairs: list[dict[str, torch.Tensor]] = []
        while len(pairs) < round(self.negatives * len(indices)):
            members = self.groups[int(rng.integers(len(self.groups)))]
            room = min(len(members), len(indices) - len(pairs))
            members = rng.permutation(members)[:room]
            # One moment for the group: versions of a song share its timing, so their pairs
            # differ only in what the embedder must tell apart.
            start_s = self._start_s(int(members[0]), rng, self.durations_s[members].min())
            pairs += [self._pair(int(track), start_s, rng) for track in members]
        return pairs + [self[index] for index in indices[len(pairs) :]]

    @staticmethod
    def _rng() -> np.random.Generator:
        # torch's generator is seeded per worker and epoch by the DataLoader (and by
        # seed_everything), so draws differ across epochs yet replay for a given seed.
        return np.random.default_rng(int(torch.randint(2**62, (1,))))

    def _start_s(
        self, track: int, rng: np.random.Generator, duration_s: float | None = None
    ) -> float:
        """Where a pair's context starts: from the track's anchor pool, else uniformly within
        ``duration_s`` (the track's)."""
        context_s = self.context_samples / self.sample_rate
        starts_s, probabilities = self.anchor_pools[track] if self.anchor_pools else ((), ())
        if len(starts_s):
            return float(rng.choice(starts_s, p=probabilities))
        duration_s = self.durations_s[track] if duration_s is None else duration_s
        return rng.uniform(0.0, max(0.0, duration_s - context_s))

    def _pair(
        self, track: int, start_s: float, rng: np.random.Generator
    ) -> dict[str, torch.Tensor]:
        context_s = self.context_samples / self.sample_rate
        context = fit_length(
            read_segment(self.paths[track], self.sample_rate, start_s, context_s),
            self.context_samples,
        )
        anchor_start = self.offset_samples
        positive_start = anchor_start + int(
            rng.integers(-self.offset_samples, self.offset_samples + 1)
        )
        anchor = context[anchor_start : anchor_start + self.view_samples]
        positive = context[positive_start : positive_start + self.view_samples]
        if self.augment_anchor:
            anchor = self.augmentation(anchor, rng)
        positive = self.augmentation(positive, rng)
        pair = {
            "anchor": torch.from_numpy(fit_length(anchor, self.window_samples).copy()),
            "positive": torch.from_numpy(fit_length(positive, self.window_samples).copy()),
        }
        if self.pair_weights is not None:
            pair["weight"] = torch.tensor(self.pair_weights[track], dtype=torch.float32)
        return pair


class RetrievalWindowDataset(Dataset):
    """Fixed-length windows of every catalog track, then of every query, for embedding.

    Catalog windows hop by ``hop_s``; query windows by ``query_hop_s`` (denser, so that some
    query window lines up closely with a catalog window). ``kinds``, ``owners`` (row in the
    catalog or query table) and ``starts_s`` describe each window.
    """

    def __init__(
        self,
        catalog: pd.DataFrame,
        queries: pd.DataFrame,
        sample_rate: int,
        window_s: float,
        hop_s: float,
        query_hop_s: float,
    ) -> None:
        self.catalog_ids = catalog["track_id"].tolist()
        self.catalog_paths = catalog.get(READ_PATH, catalog["path"]).tolist()
        self.queries = queries.reset_index(drop=True)
        self.sample_rate = sample_rate
        self.window_s = window_s
        self.hop_s = hop_s
        self.window_samples = int(round(window_s * sample_rate))
        catalog_windows = [window_starts(d, window_s, hop_s) for d in catalog["duration_s"]]
        query_windows = [window_starts(d, window_s, query_hop_s) for d in queries["length_s"]]
        self.kinds = np.concatenate(
            [
                np.full(sum(map(len, catalog_windows)), CATALOG),
                np.full(sum(map(len, query_windows)), QUERY),
            ]
        ).astype(np.int64)
        self.owners = np.concatenate(
            [np.full(len(w), i) for i, w in enumerate(catalog_windows)]
            + [np.full(len(w), i) for i, w in enumerate(query_windows)]
            + [np.zeros(0)]
        ).astype(np.int64)
        self.starts_s = np.concatenate(catalog_windows + query_windows + [np.zeros(0)])

    def __len__(self) -> int:
        return len(self.kinds)

    def __getitem__(self, index: int) -> dict[str, torch.Tensor | int | float]:
        owner, start_s = int(self.owners[index]), float(self.starts_s[index])
        if self.kinds[index] == CATALOG:
            audio = read_segment(
                self.catalog_paths[owner], self.sample_rate, start_s, self.window_s
            )
        else:
            clip = QueryClip.of(self.queries.iloc[owner]).window(start_s, self.window_s)
            audio = clip.load(self.sample_rate)
        return {
            "audio": torch.from_numpy(fit_length(audio, self.window_samples).copy()),
            "kind": int(self.kinds[index]),
            "owner": owner,
            "start_s": start_s,
        }
