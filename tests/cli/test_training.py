"""`acr fit` and the other LightningCLI commands (acr.cli.training) in process: config printing,
a short fit, mid-epoch checkpoints, resume, and the shipped recipe's W&B logging."""

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch
import yaml
from fixtures_runs import recomputed, shrunk_synthetic_fit, validation_report
from lightning.pytorch.loggers import WandbLogger

from acr.cli import main
from acr.models import EmbedderModule


def test_print_config_shows_the_resolved_recipe(
    shipped_config, capsys: pytest.CaptureFixture
) -> None:
    with pytest.raises(SystemExit):
        main(["fit", "--config", shipped_config("synthetic"), "--print_config"])
    printed = capsys.readouterr().out
    assert "acr.models.ECAPATDNN" in printed
    assert "acr.datamodules.SyntheticDataModule" in printed
    assert "every_n_train_steps: 25" in printed


@pytest.mark.parametrize("recipe", ["folder_music_gpu", "fma_gpu"])
def test_gpu_recipes_print_their_config_on_a_machine_without_a_gpu(
    shipped_config, recipe: str
) -> None:
    done = subprocess.run(
        [sys.executable, "-m", "acr", "fit", "--config", shipped_config(recipe), "--print_config"],
        capture_output=True, text=True, timeout=120,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr[-2000:]
    config = yaml.safe_load(done.stdout)
    assert config["trainer"]["accelerator"] == "gpu"
    assert config["trainer"]["precision"] == "bf16-mixed"
    assert config["data"]["init_args"]["batch_size"] == 640
    assert config["data"]["init_args"]["decode_cache"] is True
    assert config["model"]["init_args"]["encoder"]["init_args"]["channels"] == 512
    assert config["trainer"]["default_root_dir"] == f"runs/{recipe}"


def test_bf16_mixed_precision_trains(tiny_config: str, tmp_path: Path) -> None:
    """The GPU recipes' precision, on a CPU: the encoder runs in bfloat16, the loss in float32,
    and the loss is finite."""
    main(["fit", "--config", tiny_config, "--trainer.precision=bf16-mixed",
          "--trainer.max_steps=2", f"--trainer.default_root_dir={tmp_path / 'run'}",
          f"--data.init_args.data_dir={tmp_path / 'data'}"])  # fmt: skip
    logged = pd.read_csv(next((tmp_path / "run").glob("csv/version_*/metrics.csv")))
    losses = logged["train/loss"].dropna()
    assert len(losses) == 2 and np.isfinite(losses).all() and (losses > 0).all()


def test_default_root_dir_moves_every_output(
    tiny_config: str, capsys: pytest.CaptureFixture
) -> None:
    """Configs write ${trainer.default_root_dir}/...: one option relocates a run (acr sweep)."""
    relocated = ["--trainer.default_root_dir=/other/run3", "--print_config"]
    with pytest.raises(SystemExit):
        main(["fit", "--config", tiny_config, *relocated])
    printed = capsys.readouterr().out
    assert printed.count("dirpath: /other/run3/checkpoints") == 2
    assert "save_dir: /other/run3" in printed and "runs/tiny" not in printed


# tiny.yaml validates 3 six-second songs at 2 query lengths: 7 degradations of each, and a hum
# of the 2 songs whose lead sings within 6 s. One song has a confusable version.
QUERIES = 3 * 2 * 7 + 2 * 2
CONFUSED = 2 * 7


@pytest.mark.slow
def test_fit_logs_retrieval_metrics_and_checkpoints(tiny_run: Path) -> None:
    logged = pd.read_csv(tiny_run / "csv/version_0/metrics.csv")
    # Every logged metric is what the validation's per-query ranks give.
    per_query = validation_report(tiny_run)["per_query"]
    for key, cell, metric, queries in (
        ("val/top1", "overall", "top1", QUERIES),
        ("val/top5", "overall", "top5", QUERIES),
        ("val/mrr", "overall", "mrr", QUERIES),
        ("val/top1/degradation=clean", "degradation=clean", "top1", 3 * 2),
        ("val/top1/length_s=3", "length_s=3", "top1", QUERIES // 2),
        ("val/top1/hard_case=confused", "hard_case=confused", "top1", CONFUSED),
        ("val/top1/degradation=noise,length_s=1", "degradation=noise,length_s=1", "top1", 3),
    ):
        [value] = logged[key].dropna()  # one validation, at step 10
        expected = recomputed(per_query, cell)
        assert (value, expected["queries"]) == (pytest.approx(expected[metric]), queries), key
    checkpoints = sorted(p.name for p in (tiny_run / "checkpoints").glob("*.ckpt"))
    assert "last.ckpt" in checkpoints and any(n.startswith("best-step10") for n in checkpoints)
    retrieval = tiny_run / "csv/version_0/retrieval"
    assert (retrieval / "val-step10.json").is_file()
    assert (retrieval / "val_untrained-step0.json").is_file()


@pytest.mark.slow
def test_checkpoint_mid_epoch_and_resume(tiny_config: str, workdir: Path) -> None:
    # 10 steps per epoch: stopping at 6 leaves checkpoints from inside the first epoch.
    main(["fit", "--config", tiny_config, "--trainer.max_steps", "6"])
    checkpoint = torch.load(workdir / "runs/tiny/checkpoints/last.ckpt", weights_only=False)
    assert checkpoint["global_step"] == 6 and checkpoint["epoch"] == 0
    resume = ["--trainer.max_steps", "8", "--ckpt_path", "last"]
    resumed = main(["fit", "--config", tiny_config, *resume])
    assert resumed.trainer.global_step == 8
    assert (
        torch.load(workdir / "runs/tiny/checkpoints/last.ckpt", weights_only=False)["global_step"]
        == 8
    )


@pytest.mark.slow
def test_checkpoint_rebuilds_the_model_on_its_own(tiny_fit: tuple) -> None:
    cli, run = tiny_fit
    model = EmbedderModule.load_from_checkpoint(run / "checkpoints/last.ckpt")
    model.eval()
    cli.model.eval()
    waveform = torch.randn(2, 16000)
    with torch.no_grad():
        torch.testing.assert_close(model(waveform), cli.model(waveform))


def test_sample_rate_mismatch_is_a_clear_error(tiny_config: str, workdir: Path) -> None:
    with pytest.raises(ValueError, match="sample_rate=8000 but the encoder expects 16000"):
        main(["fit", "--config", tiny_config, "--data.init_args.sample_rate", "8000"])


@pytest.mark.slow
def test_shipped_config_logs_offline_to_wandb_with_a_bucket_table(
    workdir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # What acr sweep sets for each of its runs (acr.runs.sweep.tracking_environment).
    monkeypatch.setenv("WANDB_RUN_GROUP", "segment_ab")
    monkeypatch.setenv("WANDB_JOB_TYPE", "fit")
    monkeypatch.setenv("WANDB_TAGS", "seed=0,segment_strategy=random")
    cli = main(shrunk_synthetic_fit())
    [wandb_logger] = [logger for logger in cli.trainer.loggers if isinstance(logger, WandbLogger)]
    run = wandb_logger.experiment
    assert (run.group, run.job_type) == ("segment_ab", "fit")
    assert set(run.tags) == {"seed=0", "segment_strategy=random"}
    runs = list((workdir / "runs/synthetic/wandb").glob("offline-run-*"))
    assert len(runs) == 1
    tables = {
        path.parent.name: json.loads(path.read_text())
        for path in runs[0].glob("files/media/table/*/buckets_*.table.json")
    }
    assert set(tables) == {"val", "val_untrained"}
    assert tables["val"]["columns"] == ["bucket", "queries", "top1", "top5", "mrr"]
    rows = {row[0]: row for row in tables["val"]["data"]}
    assert rows["overall"][1] == 2 * 8  # 2 songs x (7 degradations + humming) at one length
    assert "degradation=noise" in rows and "hard_case=confused" in rows
    assert (workdir / "runs/synthetic/checkpoints/last.ckpt").is_file()


@pytest.mark.slow
def test_wandb_switched_off_drops_its_logger(demo_fit: tuple) -> None:
    cli, run = demo_fit  # fitted with WANDB_MODE=disabled
    assert not any(isinstance(logger, WandbLogger) for logger in cli.trainer.loggers)
    assert not (run / "wandb").exists()
    assert (run / "checkpoints/last.ckpt").is_file()
