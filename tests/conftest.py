"""Fixtures the whole suite shares: generated songs in tmp folders, the published data-set
look-alikes, the tiny recipe and the runs fitted from it and from the demo recipe, a working
directory for runs, a hand-moved clock and a song's melody.

Plain helpers that tests call with their own arguments stay importable modules beside this
file (tests/ is on ``pythonpath``): fixtures_data (FMA and MTG-Jamendo layouts, a two-step fit),
fixtures_models (tiny HuBERT backbones, also used by experiments/bench_mert_adapter.py) and
fixtures_runs (run results and validation reports).
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
import pytest
from fixtures_data import write_fma, write_mtg_jamendo
from fixtures_runs import shrunk_synthetic_fit

from acr import synth
from acr.audio import save_audio
from acr.cli import main
from acr.synth import synthesize_track

if TYPE_CHECKING:
    from acr.cli.training import ACRCLI
    from acr.pitch import PitchTrack

TESTS = Path(__file__).parent
Edit = Callable[[int, np.ndarray], np.ndarray]


@pytest.fixture(scope="session")
def tiny_config() -> str:
    """tests/conf/tiny.yaml: the shipped synthetic recipe shrunk to seconds of CPU."""
    return str(TESTS / "conf" / "tiny.yaml")


@pytest.fixture(scope="session")
def shipped_config() -> Callable[[str], str]:
    """The path of a recipe in configs/ by name: ``shipped_config("fma_hybrid")``."""

    def path(name: str) -> str:
        return str(TESTS.parent / "configs" / f"{name}.yaml")

    return path


@pytest.fixture(scope="session")
def tiny_fit(tiny_config: str, tmp_path_factory: pytest.TempPathFactory) -> tuple[ACRCLI, Path]:
    """A finished 10-step fit of tests/conf/tiny.yaml (one epoch, so one validation, at step
    10), fitted once per session: the LightningCLI, and the run directory (checkpoints/,
    csv/version_0/ with retrieval/, status.json). Add files beside it, change none."""
    directory = tmp_path_factory.mktemp("tiny-run")
    cli = main(["fit", "--config", tiny_config, "--trainer.max_steps", "10",
                f"--trainer.default_root_dir={directory / 'run'}",
                f"--data.init_args.data_dir={directory / 'data'}"])  # fmt: skip
    return cli, directory / "run"


@pytest.fixture(scope="session")
def tiny_run(tiny_fit: tuple[ACRCLI, Path]) -> Path:
    """The run directory of tiny_fit."""
    return tiny_fit[1]


@pytest.fixture(scope="session")
def demo_fit(tmp_path_factory: pytest.TempPathFactory) -> tuple[ACRCLI, Path]:
    """`make demo` cut to seconds (fixtures_runs.shrunk_synthetic_fit) with W&B switched off
    (WANDB_MODE=disabled), fitted once in a tmp folder: the LightningCLI, and its run
    directory, runs/synthetic/ as `make demo` writes it. Add files beside it, change none."""
    workdir = tmp_path_factory.mktemp("demo")
    with pytest.MonkeyPatch.context() as patch:
        patch.chdir(workdir)
        patch.setenv("WANDB_MODE", "disabled")
        cli = main(shrunk_synthetic_fit())
    return cli, workdir / "runs" / "synthetic"


@pytest.fixture
def workdir(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """Run in a temporary directory: recipes write data/ and runs/ relative to it."""
    monkeypatch.chdir(tmp_path)
    return tmp_path


class Clock:
    """A monotonic clock the test moves by hand (``clock.now = 2.5``)."""

    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


@pytest.fixture
def clock() -> Clock:
    """A clock at 0 s for Heartbeat(clock=...): throttling and rates without sleeping."""
    return Clock()


@pytest.fixture(scope="session")
def write_song() -> Callable[..., np.ndarray]:
    """``write_song(path, seed, duration_s, sample_rate, edit=None)``: generated song ``seed``
    (acr.synth), changed by ``edit(seed, audio)`` if given, written to ``path`` in the format
    its extension names; returns the audio written."""

    def write(
        path: Path, seed: int, duration_s: float, sample_rate: int = 16000, edit: Edit | None = None
    ) -> np.ndarray:
        audio = synthesize_track(seed, duration_s, sample_rate)
        if edit is not None:
            audio = edit(seed, audio)
        save_audio(path, audio, sample_rate)
        return audio

    return write


@pytest.fixture(scope="session")
def song_folder(
    tmp_path_factory: pytest.TempPathFactory, write_song: Callable[..., np.ndarray]
) -> Callable[..., Path]:
    """``song_folder(count, duration_s, sample_rate, format="wav")``: a new tmp folder (or
    ``folder=``) of generated songs ``song{seed}.{format}`` for seeds 0..count-1 (or ``seeds=``).

    ``nested=n`` puts each song in ``album{seed % n}/``; ``edit(seed, audio)`` changes a song
    before it is written (a quiet stretch, a second channel).
    """

    def make(
        count: int = 3,
        duration_s: float = 4.0,
        sample_rate: int = 16000,
        format: str = "wav",
        *,
        seeds: tuple[int, ...] | None = None,
        nested: int = 0,
        edit: Edit | None = None,
        folder: Path | None = None,
    ) -> Path:
        folder = tmp_path_factory.mktemp("songs") if folder is None else folder
        for seed in range(count) if seeds is None else seeds:
            name = f"song{seed}.{format}"
            path = folder / f"album{seed % nested}" / name if nested else folder / name
            write_song(path, seed, duration_s, sample_rate, edit)
        return folder

    return make


@pytest.fixture(scope="session")
def fma_root(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The FMA look-alike of fixtures_data (metadata, fma_small mp3s, a truncated and an empty
    one). Shared by every test that reads FMA: leave it as you found it."""
    return write_fma(tmp_path_factory.mktemp("fma"))


@pytest.fixture(scope="session")
def jamendo_root(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The MTG-Jamendo look-alike of fixtures_data (split TSVs, audio with one file missing).
    Shared: leave it as you found it."""
    return write_mtg_jamendo(tmp_path_factory.mktemp("mtg_jamendo"))


@pytest.fixture(scope="session")
def mix_melody() -> PitchTrack:
    """The predominant pitch of 10 s of song 1's mix at 16 kHz: its lead melody."""
    from acr.pitch import predominant_pitch

    song = synth.compose_song(1, duration_s=10.0)
    return predominant_pitch(synth.render_song(song), 16000)
