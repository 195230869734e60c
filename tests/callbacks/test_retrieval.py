"""RetrievalEvaluation on a fixture whose right answers are known.

An oracle embedder that maps every window to its track's code must score top-1 = 1.0; one that
maps every window to a random track's code must score near chance.
"""

import json
from pathlib import Path

import lightning as L
import numpy as np
import pandas as pd
import pytest
import torch

from acr.audio import save_audio
from acr.callbacks.retrieval import RetrievalEvaluation, summary_tables
from acr.data.datasets import CATALOG
from acr.data.manifests import write_table
from acr.datamodules.base import QUERIES_FILE, TRACKS_FILE, ACRDataModule

SAMPLE_RATE = 8000
TRACKS = 10


class NoiseTracks(ACRDataModule):
    """Ten 6-s noise tracks; queries are clean excerpts read from the tracks (source+offset)."""

    def build_manifests(self, directory: Path) -> None:
        rng = np.random.default_rng(0)
        tracks, queries = [], []
        for index in range(TRACKS):
            path = directory / f"track{index}.wav"
            save_audio(path, 0.1 * rng.standard_normal(6 * SAMPLE_RATE), SAMPLE_RATE)
            tracks.append(
                {
                    "track_id": f"track{index}",
                    "path": path.name,
                    "duration_s": 6.0,
                    "split": "val",
                    "role": "reference",
                    "source": "noise",
                }
            )
            for length_s in (1.0, 3.0):
                for repeat in range(3):
                    queries.append(
                        {
                            "query_id": f"q{index}-{length_s:g}-{repeat}",
                            "track_id": f"track{index}",
                            "source": path.name,
                            "offset_s": round(rng.uniform(0, 2.5), 3),
                            "length_s": length_s,
                            "degradation": "clean",
                        }
                    )
        write_table(pd.DataFrame(tracks), directory / TRACKS_FILE)
        write_table(pd.DataFrame(queries), directory / QUERIES_FILE)


class CodeEmbedder(L.LightningModule):
    """Embeds a window as its track's random code: the true track, or a random one."""

    def __init__(self, shuffled: bool) -> None:
        super().__init__()
        self.shuffled = shuffled
        self.codes = torch.nn.functional.normalize(torch.randn(TRACKS, 32), dim=1)
        self.rng = np.random.default_rng(1)

    def validation_step(self, batch, batch_index):
        dataset = self.trainer.val_dataloaders.dataset
        tracks = []
        for kind, owner in zip(batch["kind"].tolist(), batch["owner"].tolist()):
            track_id = (
                dataset.catalog_ids[owner]
                if kind == CATALOG
                else (dataset.queries.at[owner, "track_id"])
            )
            tracks.append(dataset.catalog_ids.index(track_id))
        if self.shuffled:
            tracks = self.rng.integers(0, TRACKS, len(tracks)).tolist()
        return self.codes[tracks]


def validate(tmp_path: Path, shuffled: bool) -> dict[str, dict[str, float]]:
    datamodule = NoiseTracks(str(tmp_path / "data"), sample_rate=SAMPLE_RATE, num_workers=0)
    evaluation = RetrievalEvaluation(evaluate_untrained=False, print_summary=False)
    trainer = L.Trainer(
        accelerator="cpu",
        logger=False,
        callbacks=[evaluation],
        enable_progress_bar=False,
        default_root_dir=tmp_path,
    )
    metrics = trainer.validate(CodeEmbedder(shuffled), datamodule=datamodule)[0]
    assert metrics["val/top1"] == pytest.approx(evaluation.latest["overall"]["top1"])
    return evaluation.latest


def test_perfect_embedder_scores_one(tmp_path: Path) -> None:
    results = validate(tmp_path, shuffled=False)
    assert results["overall"]["queries"] == TRACKS * 6
    assert results["overall"]["top1"] == 1.0
    assert results["length_s=1"]["top1"] == 1.0
    assert results["degradation=clean"]["mrr"] == 1.0


def test_shuffled_embedder_scores_near_chance(tmp_path: Path) -> None:
    results = validate(tmp_path, shuffled=True)
    chance = 1 / TRACKS
    assert results["overall"]["top1"] < 3 * chance
    assert results["overall"]["top5"] < 0.8
    report = json.loads((tmp_path / "retrieval" / "val-latest.json").read_text())
    assert report["stage"] == "val" and report["results"] == results
    assert len(report["per_query"]["rank"]) == TRACKS * 6


def test_summary_tables_keep_commas_inside_bucket_values() -> None:
    """A label such as genre="Rock, Pop" is one bucket value, not a crossed cell."""
    cell = {"top1": 0.5, "top5": 1.0, "mrr": 0.75, "queries": 2}
    results = {
        "overall": cell,
        "genre=Rock, Pop": cell,
        "degradation=noise,length_s=3": cell,
        "genre=Rock, Pop,length_s=3": cell,
    }
    per_bucket, *grids = summary_tables(results, None, (1, 5))
    assert per_bucket.row_count == 2
    assert [grid.title for grid in grids] == [
        "top1 by degradation x length_s",
        "top1 by genre x length_s",
    ]
    assert grids[1].columns[0]._cells == ["Rock, Pop"]
