"""``acr evaluate``: options from acr.retrieval.evaluation.

A module of its own because scoring imports torchmetrics, and with it sklearn, matplotlib and
more (about 270 MB and seconds): ``acr index`` and ``acr recognize`` do not need them.
"""

from __future__ import annotations

from rich.console import Console

from acr.cli.commands import Command
from acr.retrieval.evaluation import evaluate_index, report_table


def show_evaluate(report: dict, output: str | None) -> None:
    Console().print(report_table(report))
    if report["errors"]:
        print(
            f"{len(report['errors'])} queries failed (counted as misses), e.g. "
            f"{report['errors'][0]}"
        )
    if output:
        print(f"report: {output}")


COMMANDS = {"evaluate": Command(evaluate_index, show_evaluate)}
