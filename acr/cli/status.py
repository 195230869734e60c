"""``acr status``: where a run, or the whole project, stands.

It must answer in seconds without importing Lightning, so it imports only acr.status and, for
the project snapshot, acr.runs.overview.
"""

from __future__ import annotations

from acr.cli.commands import Command, json_output


def status(run_dir: str | None = None) -> dict:
    """Where a run stands, or the whole project: progress, ETA, alive or not, last error.

    With a run directory (acr fit, index, evaluate, sweep or pipeline): its status.json
    heartbeat, with stage, progress, throughput, ETA, last checkpoint, last error and whether
    the process is alive (a sweep lists its runs). Without one: the whole project
    (accelerators, data roots, recent runs, best checkpoints, latest evaluations).

    Args:
        run_dir: a run, index or report directory (default: the whole project, from here).
    """
    if run_dir is not None:
        from acr.status import run_statuses

        return run_statuses(run_dir)
    from acr.runs.overview import project_status

    return project_status(".")


def show_status(found: dict, run_dir: str | None, json: str | None = None) -> None:
    """Print it, or write it as JSON.

    Args:
        json: write the status as JSON to PATH; '-' prints only the JSON, on stdout.
    """
    if json_output(found, json):
        return
    if run_dir is not None:
        from acr.status import describe_runs

        print(describe_runs(found))
    else:
        from acr.runs.overview import describe_project

        print(describe_project(found))


COMMANDS = {"status": Command(status, show_status, ("run_dir",))}
