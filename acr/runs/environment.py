"""What this project has to work with: the machine (for every measured figure), the accelerators
torch sees, and the data roots that the shipped configs (and prepared manifests) name, each with
whether it exists and what it holds.

Part of ``acr status``'s project snapshot (acr.runs.overview); reads file names and small files
only, and imports torch only to list devices. ``python -m acr.runs.environment`` prints
:func:`machine` (the shell benchmarks' header).
"""

from __future__ import annotations

import importlib
import json
import os
import platform
from pathlib import Path
from typing import Any

import yaml

from acr.audio import AUDIO_EXTENSIONS

DATA_DIR = "data"
CONFIG_DIR = "configs"
SETTINGS_FILE = "settings.json"  # written last by acr data prepare and DataModule.prepare_data
# ``data.init_args`` keys that name data, and what each holds.
DATA_ARGUMENTS = {"root": "audio", "export": "export", "data_dir": "manifests"}


# -- accelerators --------------------------------------------------------------------------------
def accelerators() -> dict[str, Any]:
    """The CUDA devices (name, memory) and MPS that torch sees; torch is imported here only."""
    import torch

    cuda = []
    if torch.cuda.is_available():
        for index in range(torch.cuda.device_count()):
            properties = torch.cuda.get_device_properties(index)
            memory_gib = round(properties.total_memory / 2**30, 1)
            cuda.append({"index": index, "name": properties.name, "memory_gib": memory_gib})
    mps = getattr(torch.backends, "mps", None)
    mps_available = bool(mps is not None and mps.is_available())
    names = [
        f"cuda:{device['index']} {device['name']} ({device['memory_gib']:g} GiB)" for device in cuda
    ]
    names += ["mps (Apple GPU)"] if mps_available else []
    return {
        "cuda": cuda,
        "mps": mps_available,
        "cpus": os.cpu_count(),
        "torch": torch.__version__,
        "cuda_version": torch.version.cuda,
        "summary": ", ".join(names) if names else f"none: CPU only ({os.cpu_count()} CPUs)",
    }


def machine(*libraries: str) -> str:
    """One line that says where a figure was measured, printed by every benchmark and kept in
    sweep reports: platform, usable CPUs and load average (a busy machine measures slow), torch's
    threads and accelerator, and the versions of python, torch and ``libraries``."""
    import torch

    load = ", ".join(f"{value:.2f}" for value in os.getloadavg())
    usable = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
    versions = [f"python {platform.python_version()}", f"torch {torch.__version__}"]
    versions += [f"{name} {importlib.import_module(name).__version__}" for name in libraries]
    return (
        f"{platform.platform()}; {os.cpu_count()} CPUs ({usable} usable), load {load}; "
        f"torch threads {torch.get_num_threads()}; accelerator {accelerators()['summary']}; "
        + ", ".join(versions)
    )


# -- data ----------------------------------------------------------------------------------------
def data_roots(root: Path) -> list[dict[str, Any]]:
    """Every data location the configs name or prepared manifests record: whether it exists,
    whether manifests are prepared for it, and how many audio files it holds (by extension)."""
    entries: dict[Path, dict[str, Any]] = {}

    def add(path: str | Path, role: str, named_by: str | None = None) -> dict[str, Any]:
        path = Path(path).expanduser()
        path = path if path.is_absolute() else root / path
        entry = entries.setdefault(
            path,
            {"path": shown_path(path, root), "role": role, "named_by": [], "prepared_sets": []},
        )
        if named_by and named_by not in entry["named_by"]:
            entry["named_by"].append(named_by)
        return entry

    for config in sorted((root / CONFIG_DIR).glob("*.yaml")):
        for key, value in _data_arguments(config).items():
            add(value, DATA_ARGUMENTS[key], config.stem)
    data_dir = root / DATA_DIR
    settings_files = sorted(data_dir.glob(f"*/{SETTINGS_FILE}")) + sorted(
        data_dir.glob(f"*/*/{SETTINGS_FILE}")
    )
    for settings_file in settings_files:
        manifests = settings_file.relative_to(data_dir).parts[0]
        prepared = _prepared_set(settings_file, root)
        add(data_dir / manifests, "manifests")["prepared_sets"].append(prepared)
        for key in ("root", "export"):
            if isinstance(prepared.get(key), str):
                add(prepared[key], DATA_ARGUMENTS[key])["prepared_sets"].append(prepared)
    for path, entry in entries.items():
        entry["exists"] = path.exists()
        entry["prepared"] = any("error" not in item for item in entry["prepared_sets"])
        entry["audio_files"] = _count_audio(path) if path.is_dir() else None
    return list(entries.values())


def _data_arguments(config: Path) -> dict[str, str]:
    """The ``data.init_args`` entries of a config that name data (``root``, ``data_dir``...)."""
    try:
        content = yaml.safe_load(config.read_text())
    except (OSError, yaml.YAMLError):
        return {}
    data = content.get("data") if isinstance(content, dict) else None
    arguments = data.get("init_args") if isinstance(data, dict) else None
    if not isinstance(arguments, dict):
        return {}
    return {
        key: value
        for key, value in arguments.items()
        if key in DATA_ARGUMENTS and isinstance(value, str)
    }


def _prepared_set(settings_file: Path, root: Path) -> dict[str, Any]:
    """One finished set of manifests: its folder, source, track count and the data it read."""
    prepared: dict[str, Any] = {"path": shown_path(settings_file.parent, root)}
    try:
        settings = json.loads(settings_file.read_text())
    except (OSError, ValueError) as error:
        return {**prepared, "error": f"unreadable {SETTINGS_FILE} ({error})"}
    if not isinstance(settings, dict):
        return {**prepared, "error": f"{SETTINGS_FILE} is not a JSON object"}
    for key in ("source", "tracks", "root", "export"):
        if key in settings:
            prepared[key] = settings[key]
    return prepared


def _count_audio(directory: Path) -> int:
    """Audio files under ``directory`` by extension; names only, nothing opened or decoded."""
    count = 0
    for _, folders, files in os.walk(directory):
        folders[:] = [folder for folder in folders if not folder.startswith(".")]
        count += sum(1 for name in files if os.path.splitext(name)[1].lower() in AUDIO_EXTENSIONS)
    return count


def data_state(entry: dict[str, Any]) -> str:
    """missing, prepared (sets, tracks), not prepared (a manifest folder), or what it holds."""
    if not entry["exists"]:
        return "missing"
    sets = [item for item in entry["prepared_sets"] if "error" not in item]
    broken = len(entry["prepared_sets"]) - len(sets)
    if sets:
        tracks = [item["tracks"] for item in sets if isinstance(item.get("tracks"), int)]
        state = f"prepared ({len(sets)} set{'s' * (len(sets) > 1)}"
        state += f", {sum(tracks)} tracks)" if tracks else ")"
    elif entry["role"] == "manifests":
        state = "not prepared"
    elif entry["role"] == "audio" and not entry["audio_files"]:
        state = "no audio files"
    else:
        state = "not prepared"
    return state + (f", {broken} unreadable {SETTINGS_FILE}" if broken else "")


def shown_path(path: Path, root: Path) -> str:
    """A path relative to the project when it is inside it, else absolute."""
    return str(path.relative_to(root)) if path.is_relative_to(root) else str(path)


if __name__ == "__main__":
    print(machine())
