"""RetrievalEvaluation: validation as the product does it: index the catalog, search the queries.

The model only embeds validation windows; this callback collects them, builds an HNSW index of
the catalog windows, ranks tracks for every query by offset-consistent voting and logs top-k
accuracy overall and per bucket value (``val/top1/degradation=noise``).
"""

from __future__ import annotations

import re
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path

import lightning as L
import numpy as np
import torch
import torch.distributed as dist
from lightning.pytorch.loggers import WandbLogger
from rich.console import Console
from rich.table import Table
from torch.utils.data import DataLoader
from tqdm.auto import tqdm

from acr.data.datasets import CATALOG, QUERY, RetrievalWindowDataset
from acr.data.manifests import bucket_columns
from acr.files import write_json
from acr.retrieval.metrics import metrics_by_bucket, rank_of, ranks_by_query
from acr.retrieval.windows import WindowIndex

# A crossed cell's name, e.g. degradation=noise,length_s=3; a value may hold commas itself.
CROSSED_CELL = re.compile(r"([^=,]+)=(.*),([^=,]+)=([^=]*)")

Results = dict[str, dict[str, float]]


@dataclass
class WindowEmbeddings:
    """Embedded validation windows and what each one is."""

    embeddings: np.ndarray
    kinds: np.ndarray
    owners: np.ndarray
    starts_s: np.ndarray


def evaluate_windows(
    windows: WindowEmbeddings,
    dataset: RetrievalWindowDataset,
    neighbors: int = 20,
    top_k: Sequence[int] = (1, 5),
    crossed_buckets: Sequence[Sequence[str]] = (),
) -> tuple[Results, np.ndarray]:
    """Index the catalog windows, rank every query, and score the ranks per bucket."""
    index = WindowIndex(windows.embeddings.shape[1])
    is_catalog = windows.kinds == CATALOG
    for owner, rows in _rows_by_owner(windows.owners, is_catalog):
        index.add(dataset.catalog_ids[owner], windows.embeddings[rows], windows.starts_s[rows])
    is_query = windows.kinds == QUERY
    labels = np.zeros((len(windows.kinds), min(neighbors, len(index))), dtype=np.int64)
    similarities = np.zeros(labels.shape, dtype=np.float32)
    labels[is_query], similarities[is_query] = index.search(windows.embeddings[is_query], neighbors)
    queries = dataset.queries
    ranks = np.full(len(queries), np.inf)
    for owner, rows in _rows_by_owner(windows.owners, is_query):
        # Every voted track is ranked, so MRR is not cut off at the largest k.
        matches = index.rank_from_neighbors(
            labels[rows],
            similarities[rows],
            windows.starts_s[rows],
            top_k=None,
            offset_bin_s=dataset.hop_s,
        )
        ranks[owner] = rank_of(queries.at[owner, "track_id"], [m.track_id for m in matches])
    results = metrics_by_bucket(ranks, queries, bucket_columns(queries), crossed_buckets, top_k)
    return results, ranks


def _rows_by_owner(owners: np.ndarray, selected: np.ndarray) -> Iterator[tuple[int, np.ndarray]]:
    """(owner, row indices) for each owner among the selected rows."""
    rows = np.flatnonzero(selected)
    rows = rows[np.argsort(owners[rows], kind="stable")]
    unique_owners, starts = np.unique(owners[rows], return_index=True)
    yield from zip(unique_owners.tolist(), np.split(rows, starts[1:]))


class RetrievalEvaluation(L.Callback):
    """Track-identification metrics at the end of every validation.

    Args:
        neighbors: catalog windows retrieved per query window before voting.
        top_k: accuracies to report (top-1, top-5, ...); MRR is always reported.
        crossed_buckets: bucket-column combinations to report jointly, e.g. degradation x length.
        evaluate_untrained: before the first training step, also score the untrained network
            on the same validation set, so every run shows what training bought.
        print_summary: print a results table when fit ends.
    """

    def __init__(
        self,
        neighbors: int = 20,
        top_k: Sequence[int] = (1, 5),
        crossed_buckets: Sequence[Sequence[str]] = (("degradation", "length_s"),),
        evaluate_untrained: bool = True,
        print_summary: bool = True,
    ) -> None:
        self.neighbors = neighbors
        self.top_k = tuple(top_k)
        self.crossed_buckets = [tuple(combo) for combo in crossed_buckets]
        self.evaluate_untrained = evaluate_untrained
        self.print_summary = print_summary
        self.untrained: Results | None = None
        self.latest: Results | None = None
        self._batches: list[tuple[torch.Tensor, ...]] = []

    # -- collection during the validation loop ---------------------------------------------
    def on_validation_epoch_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        self._batches = []

    def on_validation_batch_end(
        self, trainer, pl_module, outputs, batch, batch_idx: int, dataloader_idx: int = 0
    ) -> None:
        self._batches.append(
            (
                outputs.detach().float().cpu(),
                batch["kind"].cpu(),
                batch["owner"].cpu(),
                batch["start_s"].cpu(),
            )
        )

    def on_validation_epoch_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        if trainer.sanity_checking:
            return
        windows = gather_windows(self._batches)
        self._batches = []
        if not len(windows.kinds):
            return
        # Rank 0 searches every process's windows; the others get its numbers, so that every
        # rank logs (and checkpoints on) what one process would have measured.
        evaluated = (
            self._evaluate(windows, trainer.val_dataloaders) if trainer.is_global_zero else None
        )
        results, per_query = trainer.strategy.broadcast(evaluated, src=0)
        self.latest = results
        # Every rank holds rank 0's numbers: syncing them changes nothing and quiets Lightning.
        pl_module.log_dict(_flatten(results, "val"), sync_dist=True)
        self._publish(trainer, results, per_query, "val")

    def on_fit_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        """W&B run summaries keep the best and the last validation, not only the last."""
        for logger in trainer.loggers:
            if isinstance(logger, WandbLogger) and trainer.is_global_zero:
                for summary in ("max", "last"):
                    logger.experiment.define_metric("val/*", summary=summary)
                logger.experiment.define_metric("train/loss", summary="min")

    # -- the untrained baseline --------------------------------------------------------------
    def on_train_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        if not self.evaluate_untrained or trainer.global_step > 0 or trainer.datamodule is None:
            return
        untrained = None
        if trainer.is_global_zero:  # the whole validation set, on one process
            loader = trainer.datamodule.val_dataloader()
            untrained = self._evaluate(_embed(pl_module, loader), loader)
        self.untrained, per_query = trainer.strategy.broadcast(untrained, src=0)
        for logger in trainer.loggers:
            logger.log_metrics(_flatten(self.untrained, "val_untrained"), step=0)
        self._publish(trainer, self.untrained, per_query, "val_untrained")

    def on_fit_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        if self.print_summary and self.latest is not None and trainer.is_global_zero:
            console = Console()
            for table in summary_tables(self.latest, self.untrained, self.top_k):
                console.print(table)

    # -- helpers -------------------------------------------------------------------------------
    def _evaluate(
        self, windows: WindowEmbeddings, loader: DataLoader
    ) -> tuple[Results, dict[str, list]]:
        """Metrics per bucket, and every query's rank (see ``ranks_by_query``)."""
        dataset = loader.dataset
        results, ranks = evaluate_windows(
            windows,
            dataset,
            neighbors=self.neighbors,
            top_k=self.top_k,
            crossed_buckets=self.crossed_buckets,
        )
        return results, ranks_by_query(dataset.queries, ranks)

    def _publish(
        self, trainer: L.Trainer, results: Results, per_query: dict[str, list], stage: str
    ) -> None:
        """Write the full results as JSON next to the logs, and a table to W&B if attached."""
        # trainer.log_dir is a broadcast under DDP: every rank must ask, or rank 0 waits forever.
        directory = Path(trainer.log_dir or trainer.default_root_dir) / "retrieval"
        if not trainer.is_global_zero:
            return
        directory.mkdir(parents=True, exist_ok=True)
        report = {
            "stage": stage,
            "step": trainer.global_step,
            "results": results,
            "per_query": per_query,
        }
        for name in (f"{stage}-step{trainer.global_step}.json", f"{stage}-latest.json"):
            write_json(directory / name, report)
        columns = ["bucket", "queries", *[f"top{k}" for k in self.top_k], "mrr"]
        rows = [
            [name, r["queries"], *[r[f"top{k}"] for k in self.top_k], r["mrr"]]
            for name, r in results.items()
        ]
        for logger in trainer.loggers:
            if isinstance(logger, WandbLogger):
                logger.log_table(
                    key=f"{stage}/buckets", columns=columns, data=rows, step=trainer.global_step
                )


def gather_windows(batches: list[tuple[torch.Tensor, ...]]) -> WindowEmbeddings:
    """The validation windows every process embedded, once each, in (kind, owner, start) order.

    Under DDP each process embeds a shard of the validation set, and the distributed sampler
    pads the shards to equal length with repeated windows: those are dropped, and the order is
    made independent of how the set was sharded, so that the index built from the windows,
    and every number measured on it, is the one a single process gets."""
    columns = [torch.cat(parts).numpy() for parts in zip(*batches)] if batches else None
    if dist.is_available() and dist.is_initialized() and dist.get_world_size() > 1:
        shards: list = [None] * dist.get_world_size()
        dist.all_gather_object(shards, columns)
        shards = [shard for shard in shards if shard is not None]
        columns = [np.concatenate(parts) for parts in zip(*shards)] if shards else None
    if columns is None:
        return WindowEmbeddings(np.zeros((0, 0), np.float32), *(np.zeros(0) for _ in range(3)))
    return _each_window_once(*columns)


def _each_window_once(embeddings, kinds, owners, starts_s) -> WindowEmbeddings:
    """The windows without repeats, sorted by (kind, owner, start) (np.unique sorts them)."""
    _, first = np.unique(np.stack([kinds, owners, starts_s]), axis=1, return_index=True)
    return WindowEmbeddings(embeddings[first], kinds[first], owners[first], starts_s[first])


def _embed(pl_module: L.LightningModule, loader: DataLoader) -> WindowEmbeddings:
    """Embed every validation window outside the validation loop (for the untrained baseline)."""
    was_training = pl_module.training
    pl_module.eval()
    parts = []
    with torch.inference_mode():
        for batch in tqdm(loader, desc="untrained baseline", leave=False):
            embeddings = pl_module(batch["audio"].to(pl_module.device))
            parts.append(
                (embeddings.float().cpu(), batch["kind"], batch["owner"], batch["start_s"])
            )
    pl_module.train(was_training)
    return _each_window_once(*(torch.cat(columns).numpy() for columns in zip(*parts)))


def _flatten(results: Results, prefix: str) -> dict[str, float]:
    """``val/top1`` for the whole set, ``val/top1/degradation=noise`` per bucket value."""
    flat = {}
    for name, values in results.items():
        for metric, value in values.items():
            if metric in ("queries", "ci95"):
                continue
            key = f"{prefix}/{metric}" if name == "overall" else f"{prefix}/{metric}/{name}"
            flat[key] = float(value)
    return flat


def summary_tables(
    trained: Results, untrained: Results | None, top_k: Sequence[int]
) -> list[Table]:
    """Per-bucket metrics (untrained beside trained), then top-1 for each crossed cell."""
    per_bucket = Table(title="Retrieval on the validation catalog (songs unseen in training)")
    for column in ("bucket", "value"):
        per_bucket.add_column(column)
    per_bucket.add_column("queries", justify="right")
    if untrained is not None:
        per_bucket.add_column("untrained top1", justify="right")
    for metric in [*(f"top{k}" for k in top_k), "mrr"]:
        per_bucket.add_column(metric, justify="right", style="bold" if metric == "top1" else "")
    crossed: dict[str, dict[str, dict[str, str]]] = {}
    for name, values in trained.items():
        cell = "" if untrained is None else f" ({untrained[name]['top1']:.2f})"
        crossed_cell = CROSSED_CELL.fullmatch(name)  # degradation=noise,length_s=3
        if crossed_cell:
            row_key, row, column_key, column = crossed_cell.groups()
            grid = crossed.setdefault(f"{row_key} x {column_key}", {})
            grid.setdefault(row, {})[column] = f"{values['top1']:.2f}{cell}"
            continue
        bucket, _, value = name.partition("=")
        row = [bucket, value, str(values["queries"])]
        if untrained is not None:
            row.append(f"{untrained[name]['top1']:.3f}")
        row += [f"{values[f'top{k}']:.3f}" for k in top_k] + [f"{values['mrr']:.3f}"]
        per_bucket.add_row(*row)
    return [per_bucket] + [
        _grid_table(title, grid, untrained is not None) for title, grid in crossed.items()
    ]


def _grid_table(title: str, grid: dict[str, dict[str, str]], with_untrained: bool) -> Table:
    suffix = " (untrained)" if with_untrained else ""
    table = Table(title=f"top1{suffix} by {title}")
    row_name, column_name = title.split(" x ")
    columns = sorted({c for cells in grid.values() for c in cells}, key=_natural)
    table.add_column(f"{row_name} / {column_name}")
    for column in columns:
        table.add_column(column, justify="right")
    for row, cells in grid.items():
        table.add_row(row, *(cells.get(column, "") for column in columns))
    return table


def _natural(value: str) -> tuple:
    """Numbers in numeric order (1, 3, 10), everything else alphabetically after them."""
    try:
        return (0, float(value), "")
    except ValueError:
        return (1, 0.0, value)
