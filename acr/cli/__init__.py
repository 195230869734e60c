"""The ``acr`` command: LightningCLI for fit/validate/test/predict (acr.cli.training), or one of
acr's commands, whose options come from library signatures (acr.cli.commands).

Each command's module is imported only when that command runs, so ``acr status`` does not load
the models or Lightning.
"""

from __future__ import annotations

import importlib
import sys
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from acr.cli.training import ACRCLI

TRAINING = ("fit", "validate", "test", "predict")
# Each command and the module whose COMMANDS defines it.
MODULES = {
    "index": "acr.cli.retrieval",
    "recognize": "acr.cli.retrieval",
    "evaluate": "acr.cli.evaluation",
    "evaluate-monitor": "acr.cli.evaluation",
    "fuse": "acr.cli.retrieval",
    "monitor": "acr.cli.monitor",
    "dedup": "acr.cli.monitor",
    "serve": "acr.cli.serve",
    "db": "acr.cli.database",
    "calibrate": "acr.cli.retrieval",
    "data": "acr.cli.data",
    "status": "acr.cli.status",
    "sweep": "acr.cli.runs",
    "report": "acr.cli.runs",
    "pipeline": "acr.cli.runs",
}

OVERVIEW = """usage: acr COMMAND [options]   (python -m acr is the same; acr COMMAND --help)

Training (LightningCLI):
  fit         train an embedder, e.g. acr fit --config configs/synthetic.yaml
  validate    score a model on the validation set
  test        run the test loop
  predict     run the predict loop

Retrieval:
  index       index a catalog with fingerprint, embedding, melody or hybrid engines;
              index add|replace|remove|list|compact change or show an index
  recognize   identify clips: ranked tracks, scores and offsets
  evaluate    top-1/top-5/MRR per bucket with 95% intervals (Wilson, MRR: bootstrap)
  evaluate-monitor  acr monitor's segments against a mix's truth.csv: recall, precision,
              boundary error, false alarms per hour, per bucket
  fuse        fit the hybrid fusion on validation queries
  monitor     every catalog track in a long recording (file, stdin, microphone), start to end
  dedup       exact and partial duplicates within a catalog, with their time ranges
  calibrate   fit P(answer is right) and the no_match threshold at a false-match rate
  serve       a recognition service over HTTP (FastAPI): recognize, tracks, healthz, metrics
  db          the catalog in PostgreSQL + pgvector for many replicas:
              db init|push|remove|list

Data:
  data        data preparation and checks:
                data inspect ROOT            counts, hours, formats, unreadable files (headers)
                data check ROOT              ready for training? files long enough for queries
                data prepare SOURCE ROOT     catalog/train/val/test manifests, cached
                data validate MANIFEST_DIR   files decode, durations, ids, leakage; exit 1 if not
                data make-queries            degraded query clips of a catalog
                data make-mixes              recordings of excerpts, speech, music + truth.csv

Runs:
  pipeline    inspect, prepare, validate, fit, index, fuse, evaluate and report in one go
  status      where a run stands (acr status RUN_DIR), or the whole project (acr status)
  sweep       a config over seeds x grid values, aggregated, with paired verdicts per bucket
  report      benchmark report, model card, release checklist, artifact manifest of a run
"""


def main(args: list[str] | None = None) -> ACRCLI | int:
    """Run the CLI; ``args`` lets tests call it in-process (torchgeo style)."""
    argv = sys.argv[1:] if args is None else list(args)
    if not argv or argv[0] in ("-h", "--help"):
        print(OVERVIEW)
        raise SystemExit(0)
    try:
        if argv[0] in TRAINING:
            from acr.cli.training import training_cli

            return training_cli(argv)
        if argv[0] not in MODULES:
            print(f"acr: error: unknown command {argv[0]!r} (see acr --help)", file=sys.stderr)
            return 2
        command = importlib.import_module(MODULES[argv[0]]).COMMANDS[argv[0]]
        return command.run(f"acr {argv[0]}", argv[1:])
    finally:
        _end_process_group()


def _end_process_group() -> None:
    """A DDP command (acr fit, acr index --trainer.devices) leaves its process group to the
    interpreter's exit, where gloo's threads can be torn down mid-flight: "terminate called
    without an active exception" and SIGABRT after a finished fit (seen once in CI, under
    load). Destroyed here instead; torch is not imported for a command that did not."""
    distributed = sys.modules.get("torch.distributed")
    if distributed is not None and distributed.is_available() and distributed.is_initialized():
        distributed.destroy_process_group()


def run() -> int:
    """Console-script entry point: the exit status of ``main``."""
    result = main()
    return result if isinstance(result, int) else 0
