"""Runs and their results, written or read by code: a sweep run's result.json with known
per-query outcomes, the shipped demo fit cut to seconds, and metrics recomputed from the
per-query ranks a validation report keeps.

Shared by the runs/, cli/ and datamodules/ tests and by the notebook test.
"""

import json
from pathlib import Path

import numpy as np

SYNTHETIC = str(Path(__file__).parents[1] / "configs" / "synthetic.yaml")


def constructed_result(arm: str, seed: int, hits: np.ndarray) -> dict:
    """A run's result.json as acr.runs.sweep writes it, with known per-query outcomes; its queries
    alternate clean and noise."""
    degradations = np.array(["clean", "noise"] * (len(hits) // 2))
    cells = {"overall": hits} | {
        f"degradation={name}": hits[degradations == name] for name in ("clean", "noise")
    }
    return {
        "run": f"{arm}/seed{seed}",
        "arm": arm,
        "seed": seed,
        "grid": {"k": arm.split("=")[1]},
        "command": [],
        "seconds": 1.0,
        "systems": {
            "validation": {
                bucket: {
                    "top1": float(np.mean(cell)),
                    "top5": 1.0,
                    "mrr": 0.5,
                    "queries": len(cell),
                }
                for bucket, cell in cells.items()
            }
        },
        "per_query": {
            "validation": {
                "query_id": [f"q{i}" for i in range(len(hits))],
                "rank": [1 if hit else 3 for hit in hits],
                "buckets": {"degradation": degradations.tolist()},
            }
        },
    }


def tie_and_winner_results(queries: int = 400, seeds: int = 3) -> list[dict]:
    """Three arms over ``seeds`` seeds: k=a, k=same_as_a with a's very outcomes, and k=better,
    right wherever a is and on about 30 % of a's misses (a is right on about 60 %)."""
    rng = np.random.default_rng(0)
    results = []
    for seed in range(seeds):
        base = rng.random(queries) < 0.6
        better = base | (rng.random(queries) < 0.3)
        results += [
            constructed_result("k=a", seed, base),
            constructed_result("k=same_as_a", seed, base),
            constructed_result("k=better", seed, better),
        ]
    return results


def shrunk_synthetic_fit() -> list[str]:
    """configs/synthetic.yaml (with its offline W&B logger) cut to 2 steps on 5 short songs."""
    shrink = {
        "train_tracks": "3",
        "val_tracks": "2",
        "confusable_versions": "1",
        "track_duration_s": "10",
        "query_lengths_s": "[1.0]",
        "batch_size": "4",
        "steps_per_epoch": "2",
        "num_workers": "0",
        "generation_workers": "1",
    }
    overrides = [arg for key, value in shrink.items() for arg in (f"--data.init_args.{key}", value)]
    return ["fit", "--config", SYNTHETIC, "--trainer.max_steps", "2", *overrides]


def validation_report(run_dir: str | Path, stage: str = "val") -> dict:
    """The last report RetrievalEvaluation wrote under ``run_dir`` (retrieval/STAGE-latest.json)."""
    [path] = Path(run_dir).glob(f"**/retrieval/{stage}-latest.json")
    return json.loads(path.read_text())


def recomputed(per_query: dict, cell: str = "overall") -> dict[str, float]:
    """top1, top5, mrr and the query count of one results cell ("overall", "genre=Rock",
    "degradation=noise,length_s=1") from a report's per-query ranks (its ``per_query``, or one
    system's in an ``acr evaluate`` report), not from its results."""
    ranks = np.array([np.inf if rank is None else rank for rank in per_query["rank"]], float)
    chosen = np.ones(len(ranks), bool)
    if cell != "overall":
        for condition in cell.split(","):
            column, value = condition.split("=", 1)
            chosen &= np.array(per_query["buckets"][column]) == value
    ranks = ranks[chosen]
    return {
        "top1": float(np.mean(ranks <= 1)),
        "top5": float(np.mean(ranks <= 5)),
        "mrr": float(np.mean(1 / ranks)),
        "queries": int(chosen.sum()),
    }
