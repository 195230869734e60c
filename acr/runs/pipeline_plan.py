"""What ``acr pipeline`` runs with: its settings resolved once, the fit's DataModule, digests.

The fit runs as ``acr fit --config CONFIG --KEY=VALUE ...`` in a child process; the stages
before it (prepare, validate) must see the very data that fit will train on, so the config's
``data`` section is parsed here as LightningCLI parses it (jsonargparse, the same overrides).
Digests say whether a stage's inputs changed since it last ran (acr.runs.pipeline).
"""

from __future__ import annotations

import hashlib
import importlib
import json
import os
import re
from argparse import ArgumentError
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from functools import cached_property
from pathlib import Path
from typing import Any

import yaml
from jsonargparse import ArgumentParser

from acr.datamodules import ACRDataModule, SyntheticDataModule
from acr.datamodules.sources import SOURCES, source_options
from acr.files import sha256_file
from acr.status import Heartbeat

# The shipped `acr fit` recipe of each source (configs/ of the acr checkout).
CONFIG_DIR = Path(__file__).resolve().parents[2] / "configs"
FIT_CONFIGS = {
    "synthetic": "synthetic.yaml",
    "folder": "folder.yaml",
    "fma": "fma_hybrid.yaml",
    "mtg_jamendo": "mtg_jamendo.yaml",
}
VALIDATION_SEED_OFFSET = 1  # fusion's queries are drawn with seed + 1, the reported ones with seed


class PipelineError(ValueError):
    """The pipeline cannot go on as asked (another one writes the folder, a fit still runs)."""


@dataclass
class Plan:
    """The pipeline's settings (the parameters of acr.runs.pipeline.run_pipeline), resolved:
    absolute paths, the fit config found, fit options as command-line strings."""

    output: Path
    source: str
    root: Path | None
    fit_config: Path
    fit_options: dict[str, str]
    max_steps: int | None
    engine: str
    catalog_tracks: int | None
    query_lengths_s: tuple[float, ...]
    query_degradations: tuple[str, ...]
    queries_per_track: int
    query_tracks: int | None
    validate_sample: int | None
    top_k: int
    bootstrap: int
    seed: int
    workers: int | None
    index_save_every: int
    wandb: str
    field_queries: bool = True

    @property
    def data_dir(self) -> Path:
        """The fit's ``data_dir``: generated audio and cached manifests stay in the output."""
        return self.output / "data"

    @property
    def fit_dir(self) -> Path:
        return self.output / "fit"

    @property
    def index_dir(self) -> Path:
        return self.output / "index"

    @property
    def catalog_path(self) -> Path:
        """The tracks that are indexed and queried (held out from training)."""
        return self.output / "index_catalog.csv"

    @property
    def fit_overrides(self) -> dict[str, str]:
        """``KEY: VALUE`` given to ``acr fit``: the user's options, then the pipeline's own."""
        overrides = dict(self.fit_options)
        if self.max_steps is not None:
            overrides["trainer.max_steps"] = str(self.max_steps)
        overrides["data.init_args.data_dir"] = str(self.data_dir)
        if self.root is not None:
            overrides["data.init_args.root"] = str(self.root)
        return overrides

    @cached_property
    def data_config(self) -> Any:
        """The fit config's ``data`` section after the overrides, parsed as the fit parses it;
        it must train on this pipeline's source."""
        trained_on = _parse_data_section(self.fit_config).data.class_path
        module, name = trained_on.rsplit(".", 1)
        expected = (
            SyntheticDataModule if self.source == "synthetic" else SOURCES[self.source].load()
        )
        if getattr(importlib.import_module(module), name) is not expected:
            raise ValueError(
                f"fit_config: {self.fit_config} trains on {name}, not on the {self.source} "
                f"source ({expected.__name__})"
            )
        return _parse_data_section(self.fit_config, self._data_overrides())

    @property
    def data_settings(self) -> dict[str, Any]:
        """The fit's DataModule ``init_args``, as the fit will see them."""
        return self.data_config.data.init_args.as_dict()

    @cached_property
    def datamodule(self) -> ACRDataModule:
        """The fit's DataModule, built as ``acr fit`` builds it (prepare_data not yet run)."""
        return _data_parser().instantiate(self.data_config).data

    @cached_property
    def source_options(self) -> dict[str, Any]:
        """The source's own options (split, subset, metadata...) from the fit's data section,
        so that prepare splits the tracks exactly as the fit does."""
        accepted = source_options(self.source)
        return {key: value for key, value in self.data_settings.items() if key in accepted}

    @cached_property
    def collection_digest(self) -> str:
        """Paths, sizes and times of every file under ROOT and the paths the source options
        name (a metadata table, a split folder): a changed collection shows without reading it."""
        assert self.root is not None, "only sources on a ROOT have a collection"
        named = [value for value in self.source_options.values() if isinstance(value, str)]
        paths = [self.root, *(Path(value) for value in named if Path(value).exists())]
        return tree_digest(paths)

    def check(self) -> None:
        """Fail before any work when the fit config does not train on this source."""
        self.datamodule  # noqa: B018 (built, and checked, on first use)

    def _data_overrides(self) -> dict[str, str]:
        overrides = {
            key: value for key, value in self.fit_overrides.items() if key.startswith("data.")
        }
        if self.source == "synthetic" and self.workers is not None:
            # How many processes render songs: not a manifest setting, so not the fit's business.
            overrides["data.init_args.generation_workers"] = str(self.workers)
        return overrides


@dataclass
class StageContext:
    """What a stage runs with (acr.runs.pipeline_stages)."""

    plan: Plan
    upstream: dict[str, dict[str, str]]  # outputs of the stages that are done
    resume: bool  # an interrupted run of this stage, with the same inputs, is there to go on
    heartbeat: Heartbeat


@dataclass(frozen=True)
class Stage:
    """One step of the chain: ``run`` does the work and returns its outputs (name -> path);
    ``settings`` is what they depend on besides the outputs of ``depends_on``; ``digested``
    names the output files that later stages read, whose content they depend on."""

    name: str
    run: Callable[[StageContext], dict[str, str]]
    settings: Callable[[Plan], dict[str, Any]]
    depends_on: tuple[str, ...] = ()
    digested: tuple[str, ...] = ()
    resumable: bool = False
    needed: Callable[[Plan], bool] = lambda plan: True


def find_fit_config(source: str, fit_config: str | None) -> Path:
    """``fit_config`` (absolute), or the source's shipped recipe in configs/ when it is None."""
    if fit_config is None:
        path = CONFIG_DIR / FIT_CONFIGS[source]
        if not path.is_file():
            raise FileNotFoundError(
                f"fit_config: the shipped {path} is missing (acr is not run from its "
                "checkout); give fit_config"
            )
        return path
    path = Path(fit_config).expanduser().absolute()
    if not path.is_file():
        raise FileNotFoundError(f"fit_config: {path} does not exist")
    return path


def option_text(value: Any) -> str:
    """A fit option as ``acr fit`` reads it on its command line (lists and booleans as YAML)."""
    return value if isinstance(value, str) else json.dumps(value)


def digest(value: Any) -> str:
    """sha256 of a JSON-ready value, keys sorted (so equal settings give equal digests)."""
    text = json.dumps(value, sort_keys=True, default=str)
    return hashlib.sha256(text.encode()).hexdigest()


def files_digest(paths: Iterable[str | Path]) -> str:
    """sha256 of the files' contents, in the order given."""
    return digest([sha256_file(path) for path in paths])


def tree_digest(paths: Sequence[Path]) -> str:
    """sha1 of every file's path, size and modification time under ``paths`` (files or
    folders); reads no content, so a large collection costs one walk."""
    hasher = hashlib.sha1()
    for top in paths:
        hasher.update(f"{top}\n".encode())
        files = [top] if top.is_file() else sorted(_walk(top))
        for path in files:
            stat = path.stat()
            hasher.update(f"{path}\0{stat.st_size}\0{stat.st_mtime_ns}\n".encode())
    return hasher.hexdigest()


def _walk(folder: Path) -> Iterable[Path]:
    for directory, _, names in os.walk(folder):
        for name in names:
            yield Path(directory) / name


def _data_parser() -> ArgumentParser:
    """A parser of the ``data`` section alone, with LightningCLI's subclass mode for it."""
    parser = ArgumentParser(exit_on_error=False)
    parser.add_subclass_arguments(ACRDataModule, "data", required=True)
    return parser


def _parse_data_section(config: Path, overrides: dict[str, str] | None = None) -> Any:
    """The ``data`` section of an ``acr fit`` config with ``--data.KEY=VALUE`` overrides."""
    section = (yaml.safe_load(config.read_text()) or {}).get("data")
    if not isinstance(section, dict) or "class_path" not in section:
        raise ValueError(f"fit_config: {config} has no data section with a class_path")
    arguments = ["--data", json.dumps(section)]
    arguments += [f"--{key}={value}" for key, value in (overrides or {}).items()]
    try:
        return _data_parser().parse_args(arguments)
    except ArgumentError as error:
        message = " ".join(str(error).split())
        unknown = re.search(r"class_path '([\w.]+)': Option '(\w+)' is not accepted", message)
        if unknown:  # the usual mistake: another source's option
            class_name = unknown[1].rsplit(".", 1)[-1]
            raise ValueError(
                f"fit_options: data.init_args.{unknown[2]} is not an option of {class_name}"
            ) from None
        where = f"fit_options {overrides}" if overrides else f"fit_config {config}"
        raise ValueError(f"{where}: {message}") from None
