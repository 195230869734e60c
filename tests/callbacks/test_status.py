"""acr.callbacks.status: a fit's heartbeat reports its step, rate, ETA and last checkpoint while
it runs, and its totals when it ends."""

import time
from pathlib import Path

import pytest
from lightning.pytorch import Callback, LightningModule, Trainer

from acr.cli import main
from acr.status import read_status

# Longer than RunStatus's 2-s write interval: the step after this pause is always written.
PAUSE_S = 2.1


class StatusProbe(Callback):
    """Reads status.json during a fit: once the heartbeat has handled step 4."""

    def __init__(self) -> None:
        self.seen: dict | None = None

    def on_train_batch_start(
        self, trainer: Trainer, pl_module: LightningModule, batch: object, index: int
    ) -> None:
        if trainer.global_step == 3:
            time.sleep(PAUSE_S)  # the end of step 4 is then due a write
        if trainer.global_step == 4:
            self.seen = read_status(trainer.default_root_dir)


@pytest.mark.slow
def test_a_running_fit_reports_its_step_and_last_checkpoint(
    tiny_config: str, workdir: Path
) -> None:
    probe_class = f"{StatusProbe.__module__}.{StatusProbe.__name__}"
    cli = main(
        [
            "fit",
            "--config",
            tiny_config,
            "--trainer.max_steps",
            "6",
            f"--trainer.callbacks+={probe_class}",
        ]
    )
    (probe,) = [c for c in cli.trainer.callbacks if type(c).__name__ == "StatusProbe"]
    seen = probe.seen
    assert (seen["job"], seen["state"], seen["stage"]) == ("fit", "running", "training")
    assert seen["progress"] == {"done": 4, "total": 6, "unit": "steps"}
    # At most 4 steps since the first report, with the PAUSE_S sleep among them.
    assert 0 < seen["throughput"] < 4 / PAUSE_S
    assert seen["eta_s"] == pytest.approx((6 - 4) / seen["throughput"])
    assert Path(seen["last_checkpoint"]).is_file()  # tiny.yaml saves last.ckpt every 2 steps
    assert "train/loss" in seen["details"]
    status = read_status(workdir / "runs" / "tiny")
    assert status["state"] == "finished" and status["totals"]["steps"] == 6
    assert Path(status["totals"]["last_checkpoint"]).name == "last.ckpt"
