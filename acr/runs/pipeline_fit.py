"""The fit stage of ``acr pipeline``: ``acr fit`` in a child process, followed and resumable.

The fit is the command a user would type, with ``--trainer.default_root_dir OUTPUT/fit``; its
output goes to OUTPUT/fit.log (acr.runs.sweep.execute), its progress to a bar and to the
pipeline's heartbeat (read from the fit's own status.json), and a fit cut short by a kill goes
on from its last.ckpt with ``--ckpt_path last``.
"""

from __future__ import annotations

import json
import os
import shutil
import socket
import sys
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from tqdm.auto import tqdm

from acr.files import newest, process_exists, sha256_file
from acr.models.checkpoints import CheckpointError, usable_checkpoint
from acr.runs.pipeline_plan import PipelineError, Plan, StageContext
from acr.runs.sweep import execute
from acr.status import STATUS_FILE, Heartbeat

FIT_LOG = "fit.log"
FOLLOW_INTERVAL_S = 2.0  # how often the fit's status.json is read for progress
EXIT_GRACE_S = 10.0  # how long a killed fit may take to go before it counts as running


def fit_stage(context: StageContext) -> dict[str, str]:
    """``acr fit`` in a child process into OUTPUT/fit, its output appended to OUTPUT/fit.log;
    an interrupted fit goes on from its last.ckpt (``--ckpt_path last``)."""
    plan = context.plan
    refuse_live_fit(plan.fit_dir)
    last = plan.fit_dir / "checkpoints" / "last.ckpt"
    start = resume_point(last) if context.resume else None
    resume = start is not None
    if not resume:
        shutil.rmtree(plan.fit_dir, ignore_errors=True)  # a fit of other inputs, or a broken one
    log = plan.output / FIT_LOG
    print(f"  {'resuming from ' + str(start) if resume else 'training'}; log: {log}")
    with following_fit(plan.fit_dir, context.heartbeat):
        execute(fit_command(plan, resume), log, fit_environment(plan))
    checkpoint = newest(plan.fit_dir / "checkpoints", "best*.ckpt") or last
    if not checkpoint.is_file():
        raise FileNotFoundError(f"{plan.fit_dir / 'checkpoints'}: the fit saved no checkpoint")
    return {"fit_dir": str(plan.fit_dir), "checkpoint": str(checkpoint), "fit_log": str(log)}


def fit_settings(plan: Plan) -> dict[str, Any]:
    """What the model depends on; how the fit logs (W&B or not) is not part of it."""
    return {
        "config_sha256": sha256_file(plan.fit_config),
        "options": plan.fit_overrides,
        "seed": plan.seed,
    }


def fit_command(plan: Plan, resume: bool) -> list[str]:
    """The fit, exactly as a user would type it; ``--trainer.default_root_dir`` moves every
    output of the config (checkpoints, logs) into OUTPUT/fit."""
    command = [sys.executable, "-m", "acr", "fit", "--config", str(plan.fit_config)]
    command += ["--seed_everything", str(plan.seed)]
    command += [f"--{key}={value}" for key, value in plan.fit_overrides.items()]
    command += [f"--trainer.default_root_dir={plan.fit_dir}"]
    return command + (["--ckpt_path", "last"] if resume else [])


def fit_environment(plan: Plan) -> dict[str, str]:
    """``WANDB_MODE=disabled`` drops the config's W&B loggers (acr.cli.training)."""
    disabled = {"WANDB_MODE": "disabled"} if plan.wandb == "disabled" else {}
    return {**os.environ, **disabled}


def resume_point(last: Path) -> Path | None:
    """The checkpoint ``acr fit --ckpt_path last`` goes on from: ``last`` when it is whole, else
    the newest whole checkpoint beside it (acr.cli.training says so in the fit's log); None when
    there is no last checkpoint, or no whole one to go on from."""
    if not last.is_file():
        return None
    try:
        return usable_checkpoint(last)[0]
    except CheckpointError:
        return None


def refuse_live_fit(fit_dir: Path) -> None:
    """Stop if the fit of a killed pipeline still runs there: two fits would write one folder.

    A fit killed with its pipeline may take a moment to go, so it gets EXIT_GRACE_S.
    """
    path = fit_dir / STATUS_FILE
    if not path.is_file():
        return
    status = json.loads(path.read_text())
    if status.get("state") != "running" or status.get("host") != socket.gethostname():
        return
    deadline = time.monotonic() + EXIT_GRACE_S
    while process_exists(status["pid"]):
        if time.monotonic() > deadline:
            raise PipelineError(
                f"{fit_dir}: a fit is still running there (pid {status['pid']}), perhaps left "
                "by a killed pipeline; wait for it to end or stop it, then run the pipeline again"
            )
        time.sleep(0.1)


@contextmanager
def following_fit(fit_dir: Path, heartbeat: Heartbeat) -> Iterator[None]:
    """While the fit runs in its own process, show its steps as a bar and in the pipeline's
    heartbeat, read from the fit's own status.json."""
    stop = threading.Event()
    bar = tqdm(desc="fit", unit="step")

    def show() -> None:
        try:
            status = json.loads((fit_dir / STATUS_FILE).read_text())
        except (OSError, json.JSONDecodeError):  # not written yet
            return
        done, total = status["progress"]["done"], status["progress"]["total"]
        if done is None:
            return
        bar.total, bar.n = total, done
        bar.set_postfix_str(status.get("stage", ""), refresh=True)
        heartbeat.update(fit_steps=done, fit_total_steps=total, fit_stage=status.get("stage"))

    def follow() -> None:
        while not stop.wait(FOLLOW_INTERVAL_S):
            show()

    thread = threading.Thread(target=follow, daemon=True)
    thread.start()
    try:
        yield
    finally:
        stop.set()
        thread.join()
        show()
        bar.close()
