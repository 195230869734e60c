"""``acr db init|push|remove|list``: the catalog in PostgreSQL (acr.database)."""

from __future__ import annotations

import sys

import pandas as pd

from acr.cli.commands import Command, CommandGroup
from acr.database.push import PushSummary, push_index, remove_tracks
from acr.database.schema import init_database


def list_tracks(database: str) -> pd.DataFrame:
    """The tracks of a database catalog: track_id, audio_s, source, in adding order.

    Args:
        database: a postgresql:// URL.
    """
    from acr.database.reader import DatabaseReader

    return DatabaseReader(database).tracks().drop(columns="number")


def show_init(meta: dict) -> None:
    hnsw = meta.get("hnsw", {})
    engines = ", ".join(meta.get("engines") or {}) or "none yet (acr db push)"
    print(f"acr database schema {meta['schema_version']}; engines: {engines}")
    print("  HNSW " + ", ".join(f"{key} {value}" for key, value in hnsw.items()))


def show_push(summary: PushSummary) -> None:
    print(
        f"pushed to {summary.database}: {summary.added} track(s) added, {summary.present}"
        f" already there; {summary.postings} postings, {summary.windows} windows"
    )
    if summary.skipped_engines:
        print(
            f"  not pushed: {', '.join(summary.skipped_engines)} (no database backend), nor the"
            " fusion and calibration fitted with them"
        )
    else:
        print(f"  fusion: {summary.fusion}, calibration: {summary.calibration}")


def show_removed(count: int) -> None:
    print(f"removed {count} track(s)")


def show_tracks(table: pd.DataFrame) -> None:
    table.to_csv(sys.stdout, index=False, lineterminator="\n")


COMMANDS = {
    "db": CommandGroup(
        init=Command(init_database, show_init),
        push=Command(push_index, show_push),
        remove=Command(remove_tracks, show_removed, variadic="track_ids"),
        list=Command(list_tracks, show_tracks),
    )
}
