"""`acr fit` and `acr validate` under DDP with two real CPU processes (gloo): what Lightning's
launcher does on a GPU node, run as a user runs it (a subprocess: the launcher starts the other
rank by running the same command line again)."""

import json
import subprocess
import sys
from pathlib import Path

import pytest


def acr(workdir: Path, *arguments: str) -> subprocess.CompletedProcess:
    done = subprocess.run(
        [sys.executable, "-m", "acr", *arguments],
        cwd=workdir,
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    return done


def latest_validation(run: Path, stage: str = "val") -> dict:
    (report,) = run.glob(f"csv/version_*/retrieval/{stage}-latest.json")
    return json.loads(report.read_text())["results"]


DDP = ["--trainer.strategy", "ddp", "--trainer.devices", "2", "--trainer.accelerator", "cpu"]


@pytest.mark.slow  # two fits' worth of processes, then three validations
def test_ddp_fit_runs_and_validation_equals_one_process(tiny_config: str, tmp_path: Path) -> None:
    data = f"--data.init_args.data_dir={tmp_path / 'data'}"
    fitted = tmp_path / "ddp"
    done = acr(tmp_path, "fit", "--config", tiny_config, data,
               f"--trainer.default_root_dir={fitted}", *DDP)  # fmt: skip
    # One rank writes: one set of checkpoints, one log version, one report per validation.
    assert sorted(p.name for p in (fitted / "checkpoints").iterdir()) == [
        "best-step5.ckpt", "last.ckpt"]  # fmt: skip
    assert len(list(fitted.glob("csv/version_*"))) == 1
    assert done.stdout.count("Outputs") == 1
    ddp_fit = latest_validation(fitted)
    untrained = latest_validation(fitted, "val_untrained")
    assert ddp_fit["overall"]["queries"] == untrained["overall"]["queries"] == 46
    # The same checkpoint validated by one process and by two gives the same numbers in every
    # bucket: the two ranks' windows are gathered, repeats from the sampler's padding dropped.
    checkpoint = str(fitted / "checkpoints" / "best-step5.ckpt")  # what that validation saw
    results = {}
    for name, extra in (("one", []), ("two", DDP)):
        acr(tmp_path, "validate", "--config", tiny_config, data, "--ckpt_path", checkpoint,
            f"--trainer.default_root_dir={tmp_path / name}", *extra)  # fmt: skip
        results[name] = latest_validation(tmp_path / name)
    assert results["one"] == results["two"]
    assert results["two"] == ddp_fit  # and what the fit measured on it, under DDP
