"""notebooks/results.ipynb runs top to bottom (nbclient, as in CI) on a real short demo fit, and
draws the sweep and evaluate-report sections when those are given."""

import json
from pathlib import Path

import nbformat
import numpy as np
import pytest
from fixtures_runs import constructed_result
from nbclient import NotebookClient

from acr.runs.sweep import SweepPlan
from acr.runs.sweep_report import write_sweep

NOTEBOOK = Path(__file__).parents[1] / "notebooks" / "results.ipynb"
PARAMETERS = ("ACR_RUN_DIR", "ACR_SWEEP_DIR", "ACR_REPORT_JSON")


@pytest.fixture(scope="module")
def demo_run(demo_fit: tuple) -> Path:
    """runs/synthetic/ as `make demo` writes it: configs/synthetic.yaml cut to 2 steps."""
    run = demo_fit[1]
    assert list(run.glob("csv/version_*/retrieval/val-latest.json"))  # validated at epoch end
    return run


def execute(directory: Path, monkeypatch: pytest.MonkeyPatch, **parameters: object) -> dict:
    """Run the notebook with the kernel in ``directory``; cell id -> that cell's outputs.

    The kernel inherits this process's environment, so the ``ACR_*`` parameters travel there.
    A failing cell raises ``CellExecutionError``.
    """
    for name in PARAMETERS:
        monkeypatch.delenv(name, raising=False)
    for name, value in parameters.items():
        monkeypatch.setenv(name, str(value))
    notebook = nbformat.read(NOTEBOOK, as_version=4)
    resources = {"metadata": {"path": str(directory)}}
    NotebookClient(notebook, timeout=300, kernel_name="python3", resources=resources).execute()
    return {cell.id: cell.outputs for cell in notebook.cells if cell.cell_type == "code"}


def kinds(outputs: list) -> set[str]:
    return {kind for output in outputs for kind in output.get("data", {})}


def write_constructed_sweep(output: Path) -> None:
    """sweep.json and runs/ARM/seedS/result.json: arm k=better wins clearly over k=a."""
    rng = np.random.default_rng(0)
    results = []
    for seed in range(3):
        base = rng.random(200) < 0.5
        results += [
            constructed_result("k=a", seed, base),
            constructed_result("k=better", seed, base | (rng.random(200) < 0.4)),
        ]
    for result in results:
        directory = output / "runs" / result["arm"] / f"seed{result['seed']}"
        directory.mkdir(parents=True)
        (directory / "result.json").write_text(json.dumps(result))
    plan = SweepPlan("constructed.yaml", [0, 1, 2], [("k", ["a", "better"])], output, "constructed")
    write_sweep(plan, results, [], samples=200)


def write_constructed_report(run: Path, path: Path) -> None:
    """An `acr evaluate` report with two systems, built from the run's last validation."""
    [validation] = run.glob("csv/version_*/retrieval/val-latest.json")
    results = json.loads(validation.read_text())["results"]
    cells = {
        bucket: metrics | {"ci95": {"top1": [max(0.0, metrics["top1"] - 0.1), metrics["top1"]]}}
        for bucket, metrics in results.items()
    }
    systems = {"embedding": cells, "fingerprint": cells}
    queries = results["overall"]["queries"]
    path.write_text(json.dumps({"queries": queries, "errors": [], "systems": systems}))


def test_committed_notebook_has_no_outputs() -> None:
    notebook = nbformat.read(NOTEBOOK, as_version=4)
    nbformat.validate(notebook)
    assert notebook.metadata.kernelspec.name == "python3"
    for cell in notebook.cells:
        if cell.cell_type == "code":
            assert not cell.outputs and cell.execution_count is None, cell.id


@pytest.mark.slow
def test_notebook_draws_the_demo_run_from_the_notebooks_folder(
    demo_run: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Jupyter starts the kernel in notebooks/: a relative RUN_DIR is from the folder above.
    notebooks = demo_run.parents[1] / "notebooks"
    notebooks.mkdir(exist_ok=True)
    outputs = execute(notebooks, monkeypatch, ACR_RUN_DIR="runs/synthetic")
    assert "text/html" in kinds(outputs["demo-table"])
    for cell in ("demo-bars", "demo-heatmap", "demo-curve"):
        assert "image/png" in kinds(outputs[cell]), cell
    assert not outputs["sweep-plot"] and not outputs["report-plot"]


@pytest.mark.slow
def test_notebook_draws_a_sweep_and_an_evaluate_report(
    demo_run: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    write_constructed_sweep(tmp_path / "sweep")
    write_constructed_report(demo_run, tmp_path / "report.json")
    outputs = execute(
        tmp_path,
        monkeypatch,
        ACR_RUN_DIR=demo_run,
        ACR_SWEEP_DIR=tmp_path / "sweep",
        ACR_REPORT_JSON=tmp_path / "report.json",
    )
    assert "image/png" in kinds(outputs["sweep-plot"])
    [table] = [output for output in outputs["sweep-comparisons"] if "data" in output]
    assert "k=better better" in table["data"]["text/plain"]
    assert "image/png" in kinds(outputs["report-plot"])
