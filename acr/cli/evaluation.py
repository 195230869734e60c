"""``acr evaluate`` and ``acr evaluate-monitor``: options from acr.retrieval.evaluation and
acr.monitor.scoring.

A module of its own because scoring imports torchmetrics, and with it sklearn, matplotlib and
more (about 270 MB and seconds): ``acr index`` and ``acr recognize`` do not need them.
"""

from __future__ import annotations

from rich.console import Console

from acr.cli.commands import Command
from acr.monitor import scoring
from acr.retrieval.evaluation import evaluate_index, no_match_table, report_table


def show_evaluate(report: dict, output: str | None) -> None:
    Console().print(report_table(report))
    if "no_match" in report:
        Console().print(no_match_table(report))
    if report["errors"]:
        print(
            f"{len(report['errors'])} queries failed (counted as misses), e.g. "
            f"{report['errors'][0]}"
        )
    if output:
        print(f"report: {output}")


def show_evaluate_monitor(report: dict, output: str | None) -> None:
    Console().print(scoring.report_table(report))
    for verdict in report["targets"]:
        value = verdict["value"]
        shown = "-" if value is None else f"{value:.3f}"
        sign = ">=" if verdict["at_least"] else "<="
        mark = "met" if verdict["met"] else "NOT met"
        print(f"  {verdict['metric']:<24} {shown:>7}  target {sign} {verdict['target']:g}: {mark}")
    if output:
        print(f"report: {output}")


COMMANDS = {
    "evaluate": Command(evaluate_index, show_evaluate),
    "evaluate-monitor": Command(scoring.evaluate_monitor, show_evaluate_monitor),
}
