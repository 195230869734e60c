"""The one machine line that benchmarks and sweep reports print."""

import os
import subprocess
import sys

import numpy as np
import torch

from acr.runs.environment import machine


def test_machine_names_the_cpus_load_and_the_library_versions_asked_for():
    line = machine("numpy")
    assert "\n" not in line
    assert f"{os.cpu_count()} CPUs" in line
    assert f"torch {torch.__version__}" in line and f"numpy {np.__version__}" in line
    assert f"torch threads {torch.get_num_threads()}" in line
    load = line.split("load ")[1].split(";")[0].split(", ")
    assert len(load) == 3 and all(float(value) >= 0 for value in load)


def test_shell_benchmarks_print_the_same_line_through_the_module():
    result = subprocess.run(
        [sys.executable, "-m", "acr.runs.environment"], capture_output=True, text=True, check=True
    )
    assert result.stdout.count("\n") == 1
    assert f"{os.cpu_count()} CPUs" in result.stdout and "accelerator " in result.stdout
