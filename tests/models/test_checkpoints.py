"""acr.models.checkpoints: checkpoints saved whole even when a kill lands mid-save with $TMPDIR on
another filesystem, and a resume that steps over a broken one (acr fit --ckpt_path, acr
pipeline) with one line, never a traceback."""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
import tempfile
import zipfile
from collections.abc import Iterator
from pathlib import Path

import pytest
import torch

from acr.cli import main
from acr.models.checkpoints import (
    AtomicCheckpointIO,
    CheckpointError,
    checkpoint_problem,
    usable_checkpoint,
)
from acr.runs.pipeline_fit import resume_point

# Run as `python KILLER CHECKPOINT_DIR acr-arguments...`: acr, SIGKILLed as soon as it has opened
# a file in CHECKPOINT_DIR for writing (the audit event comes before the file is opened, so it
# arms a profiler that kills at the next call, made once the file is open and truncated). Before
# the fix that file is last.ckpt, opened by the cross-device copy from fsspec's $TMPDIR
# temporary: the issue's `strace -f -e inject=sendfile:signal=SIGKILL:when=1`, without strace.
KILLER = """
import os, signal, sys

checkpoints = sys.argv.pop(1)


def kill_at_the_next_call(frame, event, argument):
    if event in ("call", "c_call"):
        os.kill(os.getpid(), signal.SIGKILL)


def arm_when_a_checkpoint_is_opened_for_writing(event, arguments):
    if event != "open" or isinstance(arguments[0], int):
        return
    mode, flags = arguments[1], arguments[2]
    writing = any(c in mode for c in "wax+") if mode else flags & (os.O_WRONLY | os.O_RDWR)
    if writing and os.path.dirname(os.fsdecode(arguments[0])) == checkpoints:
        sys.setprofile(kill_at_the_next_call)


sys.addaudithook(arm_when_a_checkpoint_is_opened_for_writing)
from acr.cli import run

sys.argv[0] = "acr"
sys.exit(run())
"""


@pytest.fixture(scope="module")
def tiny_data(tiny_config: str, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The data folder of tests/conf/tiny.yaml, generated once for this module by a one-step
    fit. Read it, change nothing."""
    directory = Path(os.path.realpath(tmp_path_factory.mktemp("tiny-data")))
    main(fit_arguments(tiny_config, directory / "run", directory / "data", 1, resume=False))
    return directory / "data"


def fit_arguments(
    tiny_config: str, run: Path, data: Path, steps: int, resume: bool = True
) -> list[str]:
    """acr fit of the tiny recipe into ``run`` to ``steps`` steps (resumed from its last)."""
    return ["fit", "--config", tiny_config, "--trainer.max_steps", str(steps),
            f"--trainer.default_root_dir={run}", f"--data.init_args.data_dir={data}",
            *(["--ckpt_path", "last"] if resume else [])]  # fmt: skip


def fit_two_steps(tiny_config: str, folder: Path, data: Path) -> Path:
    """A run fitted for 2 steps into ``folder``/run: its last.ckpt is at step 2. (A checkpoint
    copied from another run would not do: it records its folder, and a resumed fit that finds
    last.ckpt not its own saves last-v1.ckpt beside it.)"""
    run = Path(os.path.realpath(folder)) / "run"
    main(fit_arguments(tiny_config, run, data, steps=2, resume=False))
    return run


def global_step(path: Path) -> int:
    return torch.load(path, map_location="cpu", weights_only=False)["global_step"]


@pytest.fixture
def other_filesystem(tmp_path: Path) -> Iterator[Path]:
    """A folder on another filesystem than tmp_path, so a move from it to the run is a copy: a
    fresh tmpfs where the test may mount one, else /dev/shm when that is another device."""
    mount_point = tmp_path / "tmpfs"
    mount_point.mkdir()
    command = ["mount", "-t", "tmpfs", "-o", "size=64m", "acr-test", str(mount_point)]
    if os.geteuid() == 0 and shutil.which("mount"):
        if subprocess.run(command, capture_output=True).returncode == 0:
            yield mount_point
            subprocess.run(["umount", "--lazy", str(mount_point)], capture_output=True)
            return
    shm = Path("/dev/shm")
    if shm.is_dir() and os.access(shm, os.W_OK) and shm.stat().st_dev != tmp_path.stat().st_dev:
        folder = Path(tempfile.mkdtemp(dir=shm))
        yield folder
        shutil.rmtree(folder, ignore_errors=True)
        return
    pytest.skip("no second filesystem: mounting a tmpfs was refused and /dev/shm is not another")


@pytest.mark.slow
def test_a_kill_mid_save_leaves_last_checkpoint_whole_and_the_fit_resumes(
    tiny_data: Path,
    tiny_config: str,
    other_filesystem: Path,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
) -> None:
    assert other_filesystem.stat().st_dev != tmp_path.stat().st_dev
    run = fit_two_steps(tiny_config, tmp_path, tiny_data)
    last = run / "checkpoints" / "last.ckpt"
    (tmp_path / "killer.py").write_text(KILLER)
    command = [sys.executable, str(tmp_path / "killer.py"), str(last.parent)]
    command += fit_arguments(tiny_config, run, tiny_data, steps=4)
    environment = {**os.environ, "TMPDIR": str(other_filesystem)}
    killed = subprocess.run(command, env=environment, capture_output=True, text=True, timeout=300)
    # Killed while saving step 4, as the strace did; the step-2 checkpoint is whole.
    assert killed.returncode == -signal.SIGKILL, killed.stderr[-3000:]
    assert checkpoint_problem(last) is None
    assert global_step(last) == 2
    assert list(last.parent.glob(".last.*.tmp.ckpt"))  # what the killed save had written

    resumed = main(fit_arguments(tiny_config, run, tiny_data, steps=4))
    assert isinstance(resumed.trainer.strategy.checkpoint_io, AtomicCheckpointIO)
    assert resumed.trainer.global_step == 4 and global_step(last) == 4
    assert "acr fit: warning" not in capsys.readouterr().err
    assert [path.name for path in last.parent.iterdir()] == ["last.ckpt"]  # no temporaries left


@pytest.mark.slow
@pytest.mark.parametrize("damage", ["empty", "truncated"])
def test_a_broken_last_checkpoint_resumes_from_the_newest_whole_one_with_a_warning(
    damage: str,
    tiny_data: Path,
    tiny_config: str,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
) -> None:
    run = fit_two_steps(tiny_config, tmp_path, tiny_data)
    last = run / "checkpoints" / "last.ckpt"
    whole = last.rename(last.with_name("step2.ckpt"))
    content = whole.read_bytes()
    last.write_bytes(b"" if damage == "empty" else content[: len(content) // 2])

    resumed = main(fit_arguments(tiny_config, run, tiny_data, steps=4))
    assert resumed.trainer.global_step == 4 and global_step(last) == 4
    err = capsys.readouterr().err
    [warning] = [line for line in err.splitlines() if "warning" in line]
    assert warning.startswith(f"acr fit: warning: {last} is not a whole checkpoint")
    assert warning.endswith(f"resuming from {whole} instead")
    assert "Traceback" not in err


def test_a_broken_checkpoint_with_none_whole_beside_it_is_a_one_line_error(
    tiny_config: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    last = tmp_path / "run" / "checkpoints" / "last.ckpt"
    last.parent.mkdir(parents=True)
    last.write_bytes(b"")
    with pytest.raises(SystemExit) as exit:
        main(fit_arguments(tiny_config, tmp_path / "run", tmp_path / "data", steps=4))
    assert exit.value.code == 1
    err = capsys.readouterr().err
    [error] = [line for line in err.splitlines() if "error" in line]
    assert error.startswith(f"acr fit: error: {last} is not a whole checkpoint (0 bytes)")
    assert "to start afresh" in error and "Traceback" not in err


def test_a_missing_checkpoint_path_is_a_one_line_error(
    tiny_config: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    missing = tmp_path / "nowhere.ckpt"
    arguments = fit_arguments(tiny_config, tmp_path / "run", tmp_path / "data", steps=4)
    with pytest.raises(SystemExit) as exit:
        main([*arguments[:-1], str(missing)])  # --ckpt_path MISSING
    assert exit.value.code == 1
    assert f"acr fit: error: {missing}: no such checkpoint" in capsys.readouterr().err


def write_zip_without_pickle(path: Path) -> None:
    with zipfile.ZipFile(path, "w") as archive:
        archive.writestr("notes.txt", "not a checkpoint")


@pytest.mark.parametrize(
    "damage, problem",
    [
        ("whole", None),
        ("empty", "0 bytes"),
        ("truncated", "cut short or not a torch checkpoint"),
        ("text", "cut short or not a torch checkpoint"),
        ("other zip", "a zip archive but not a torch checkpoint"),
        ("missing", "no such file"),
    ],
)
def test_checkpoint_problem_tells_whole_from_broken(
    damage: str, problem: str | None, tmp_path: Path
) -> None:
    path = tmp_path / "model.ckpt"
    torch.save({"state_dict": {"weight": torch.randn(64, 64)}}, path)
    content = path.read_bytes()
    if damage == "empty":
        path.write_bytes(b"")
    elif damage == "truncated":
        path.write_bytes(content[:-100])
    elif damage == "text":
        path.write_text("a checkpoint, promise\n")
    elif damage == "other zip":
        write_zip_without_pickle(path)
    elif damage == "missing":
        path.unlink()
    found = checkpoint_problem(path)
    assert found == problem if problem is None else problem in found


def test_usable_checkpoint_falls_back_to_the_newest_whole_one(tmp_path: Path) -> None:
    for age, name in enumerate(["last.ckpt", ".last.1.tmp.ckpt", "late.ckpt", "early.ckpt"]):
        torch.save({"name": name}, tmp_path / name)
        os.utime(tmp_path / name, (1e9 - age, 1e9 - age))  # newest first
    last = tmp_path / "last.ckpt"
    assert usable_checkpoint(last) == (last, None)
    last.write_bytes(b"")
    used, warning = usable_checkpoint(last)
    assert used == tmp_path / "late.ckpt"  # the temporary of a killed save is not a candidate
    assert warning == (f"{last} is not a whole checkpoint (0 bytes); resuming from {used} instead")
    with pytest.raises(CheckpointError, match="name another checkpoint"):
        usable_checkpoint(last, fall_back=False)  # validate/test/predict use what they name


def test_atomic_save_writes_beside_the_checkpoint_and_removes_killed_saves(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Lightning's own save would need $TMPDIR (fsspec's transaction); this one never uses it.
    monkeypatch.setattr(tempfile, "tempdir", str(tmp_path / "no-such-tmp"))
    last = tmp_path / "checkpoints" / "last.ckpt"
    dead = last.with_name(".last.999999999.tmp.ckpt")  # beyond any pid: its writer is gone
    alive = last.with_name(f".last.{os.getppid()}.tmp.ckpt")  # a writer that still runs
    last.parent.mkdir()
    dead.write_bytes(b"half a checkpoint")
    alive.write_bytes(b"a checkpoint being written")
    AtomicCheckpointIO().save_checkpoint({"global_step": 4}, str(last))
    assert torch.load(last, weights_only=False) == {"global_step": 4}
    assert sorted(path.name for path in last.parent.iterdir()) == [alive.name, "last.ckpt"]


def test_the_pipeline_resumes_its_fit_from_the_newest_whole_checkpoint(tmp_path: Path) -> None:
    last = tmp_path / "checkpoints" / "last.ckpt"
    assert resume_point(last) is None  # nothing to resume: the fit starts afresh
    last.parent.mkdir()
    last.write_bytes(b"")
    assert resume_point(last) is None  # nothing whole: afresh, not a failing resume
    best = last.with_name("best-step4.ckpt")
    torch.save({"global_step": 4}, best)
    assert resume_point(last) == best  # acr fit --ckpt_path last goes on from it
    torch.save({"global_step": 6}, last)
    assert resume_point(last) == last
