"""The `acr` CLI in process: help, config printing, a short fit, mid-epoch checkpoints, resume."""

import json
from pathlib import Path

import pytest
import torch
from lightning.pytorch.loggers import WandbLogger

from acr.cli import main
from acr.models import EmbedderModule

TINY = str(Path(__file__).parent / "conf" / "tiny.yaml")


@pytest.fixture
def workdir(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """Run in a temporary directory: the tiny config writes data/ and runs/ relative to it."""
    monkeypatch.chdir(tmp_path)
    return tmp_path


def test_help_lists_subcommands(capsys: pytest.CaptureFixture) -> None:
    with pytest.raises(SystemExit) as exit_info:
        main(["--help"])
    assert exit_info.value.code == 0
    assert "fit" in capsys.readouterr().out
    with pytest.raises(SystemExit) as exit_info:
        main(["fit", "--help"])
    assert exit_info.value.code == 0
    assert "--ckpt_path" in capsys.readouterr().out


def test_print_config_shows_the_resolved_recipe(capsys: pytest.CaptureFixture) -> None:
    shipped = str(Path(__file__).parents[1] / "configs" / "synthetic.yaml")
    with pytest.raises(SystemExit):
        main(["fit", "--config", shipped, "--print_config"])
    printed = capsys.readouterr().out
    assert "acr.models.ECAPATDNN" in printed
    assert "acr.datamodules.SyntheticDataModule" in printed
    assert "every_n_train_steps: 25" in printed


def test_default_root_dir_moves_every_output(capsys: pytest.CaptureFixture) -> None:
    """Configs write ${trainer.default_root_dir}/...: one option relocates a run (acr sweep)."""
    with pytest.raises(SystemExit):
        main(["fit", "--config", TINY, "--trainer.default_root_dir=/other/run3", "--print_config"])
    printed = capsys.readouterr().out
    assert printed.count("dirpath: /other/run3/checkpoints") == 2
    assert "save_dir: /other/run3" in printed and "runs/tiny" not in printed


@pytest.mark.slow
def test_fit_logs_retrieval_metrics_and_checkpoints(workdir: Path) -> None:
    cli = main(["fit", "--config", TINY, "--trainer.max_steps", "10"])
    metrics = cli.trainer.callback_metrics
    for key in (
        "val/top1",
        "val/top5",
        "val/mrr",
        "val/top1/degradation=clean",
        "val/top1/length_s=3",
        "val/top1/hard_case=confused",
        "val/top1/degradation=noise,length_s=1",
    ):
        assert 0.0 <= float(metrics[key]) <= 1.0, key
    checkpoints = sorted(p.name for p in (workdir / "runs/tiny/checkpoints").glob("*.ckpt"))
    assert "last.ckpt" in checkpoints and any(n.startswith("best-step10") for n in checkpoints)
    retrieval = workdir / "runs/tiny/csv/version_0/retrieval"
    assert (retrieval / "val-step10.json").is_file()
    assert (retrieval / "val_untrained-step0.json").is_file()


@pytest.mark.slow
def test_checkpoint_mid_epoch_and_resume(workdir: Path) -> None:
    # 10 steps per epoch: stopping at 6 leaves checkpoints from inside the first epoch.
    main(["fit", "--config", TINY, "--trainer.max_steps", "6"])
    checkpoint = torch.load(workdir / "runs/tiny/checkpoints/last.ckpt", weights_only=False)
    assert checkpoint["global_step"] == 6 and checkpoint["epoch"] == 0
    resumed = main(["fit", "--config", TINY, "--trainer.max_steps", "8", "--ckpt_path", "last"])
    assert resumed.trainer.global_step == 8
    assert (
        torch.load(workdir / "runs/tiny/checkpoints/last.ckpt", weights_only=False)["global_step"]
        == 8
    )


@pytest.mark.slow
def test_checkpoint_rebuilds_the_model_on_its_own(workdir: Path) -> None:
    cli = main(["fit", "--config", TINY, "--trainer.max_steps", "2"])
    model = EmbedderModule.load_from_checkpoint(workdir / "runs/tiny/checkpoints/last.ckpt")
    model.eval()
    cli.model.eval()
    waveform = torch.randn(2, 16000)
    with torch.no_grad():
        torch.testing.assert_close(model(waveform), cli.model(waveform))


def test_sample_rate_mismatch_is_a_clear_error(workdir: Path) -> None:
    with pytest.raises(ValueError, match="sample_rate=8000 but the encoder expects 16000"):
        main(["fit", "--config", TINY, "--data.init_args.sample_rate", "8000"])


SHIPPED = str(Path(__file__).parents[1] / "configs" / "synthetic.yaml")


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
    return ["fit", "--config", SHIPPED, "--trainer.max_steps", "2", *overrides]


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
def test_wandb_switched_off_drops_its_logger(
    workdir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("WANDB_MODE", "disabled")
    cli = main(shrunk_synthetic_fit())
    assert not any(isinstance(logger, WandbLogger) for logger in cli.trainer.loggers)
    assert not (workdir / "runs/synthetic/wandb").exists()
    assert (workdir / "runs/synthetic/checkpoints/last.ckpt").is_file()
