"""The ``acr`` command: LightningCLI for fit/validate/test/predict, or one of acr's commands."""

from __future__ import annotations

import sys
from typing import TYPE_CHECKING

from acr.cli.commands import COMMANDS, run_tool

if TYPE_CHECKING:
    from acr.cli.training import ACRCLI


OVERVIEW = """usage: acr COMMAND [options]   (same as python -m acr)

Training (LightningCLI; `acr fit --help`):
  fit         train an embedder, e.g. acr fit --config configs/synthetic.yaml
  validate    score a model on the validation set
  test        run the test loop
  predict     run the predict loop

Retrieval and data (`acr COMMAND --help`):
  index       index a catalog with fingerprint, embedding, melody or hybrid engines
  recognize   identify clips: ranked tracks, scores and offsets
  evaluate    top-1/top-5/MRR per bucket with bootstrap confidence intervals
  fuse        fit the hybrid fusion on validation queries
  status      is a run alive, how far, how fast: acr status RUN_DIR (fit/index/evaluate/sweep)
  sweep       a config over seeds x grid values, aggregated, with paired verdicts per bucket
  report      benchmark report, model card, release checklist, artifact manifest of a run
  data        data preparation and checks:
                data inspect ROOT            counts, hours, formats, unreadable files (headers)
                data prepare SOURCE ROOT     catalog/train/val/test manifests, cached
                data validate MANIFEST_DIR   files decode, durations, ids, leakage; exit 1 if not
                data make-queries            degraded query clips of a catalog
"""


def main(args: list[str] | None = None) -> ACRCLI | int:
    """Run the CLI; ``args`` lets tests call it in-process (torchgeo style)."""
    argv = sys.argv[1:] if args is None else list(args)
    if not argv or argv[0] in ("-h", "--help"):
        print(OVERVIEW)
        raise SystemExit(0)
    if argv[0] in COMMANDS:
        return run_tool(argv)
    from acr.cli.training import training_cli

    return training_cli(argv)


def run() -> int:
    """Console-script entry point: the exit status of ``main``."""
    result = main()
    return result if isinstance(result, int) else 0
