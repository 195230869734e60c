"""Load and fault test of `acr serve` on localhost (issue 18): throughput and latency of 3-s
queries at 1, 4, 16 and 64 concurrent clients, one worker against two, bad uploads mixed into
the load, a worker killed under load, a database restart under load, and memory over a soak.

    python experiments/load_test.py --catalog /work/corpus/tracks.csv --tracks 200 \
        --work runs/load_test --out runs/load_test/default [--soak_s 600 --duration_s 20]
    python experiments/load_test.py --index INDEX_DIR --phases levels kill --max_in_flight 64
    python experiments/load_test.py --database URL --pg_data PGDATA --catalog tracks.csv

The backend is `--index DIR` or `--database URL`, passed to `acr serve` as given. Without
either, the first --tracks tracks of --catalog (without a catalog, --tracks synthetic songs)
are indexed with `acr index` into WORK/index. Queries are seeded 3-s excerpts of indexed tracks
at random offsets, encoded once as 16-kHz mono WAV and POSTed as raw bodies (audio/wav) by an
async client (aiohttp, else httpx) that stays light on 2 cores. Every request's outcome is
counted on the client: an HTTP status, or the connection error the client saw; none may go
missing. Server memory is the RSS of `acr serve` and all its workers (psutil, else /proc).
A level disturbed by other processes (CPU they used during it) is measured again.

Phases (--phases): breakdown (decode and recognition in process, no HTTP), levels, workers (16
clients on --workers 1 and 2), uploads (every --bad_every-th upload malformed, oversized,
truncated or empty, each with the 4xx the README promises), kill (SIGKILL a worker at a quarter
of the run), database (`pg_ctl restart` of --pg_data at a third; needs --database), soak.
OUT/results.json holds every figure, OUT/server-PHASE.log each server's output.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parents[1]))  # experiments.load, from the repository
from experiments.load.backend import catalog_and_index
from experiments.load.client import cycle, load
from experiments.load.faults import (
    fault_database,
    fault_worker,
    postgres_pids,
    restart_pgserver,
    serve_has_database,
)
from experiments.load.measure import breakdown, least_disturbed, measured, soak
from experiments.load.results import TARGETS, table, verdicts
from experiments.load.server import Server, machine
from experiments.load.uploads import bad_uploads, make_queries, mixed, per_kind

PHASES = ("breakdown", "levels", "workers", "uploads", "kill", "database", "soak")


class LoadTest:
    """The phases over one backend and one set of query bodies. Each phase starts its own
    server; results.json is rewritten after each, so a stopped run keeps what it measured."""

    def __init__(self, args: argparse.Namespace) -> None:
        self.args = args
        self.results = {"machine": machine(), "command": " ".join(sys.argv), "phases": {}}
        print("machine:", json.dumps(self.results["machine"]))
        if (self.results["machine"]["cores"] or 0) != 2:
            print("note: the issue's targets are for 2 cores")
        tracks, self.backend, self.results["setup"] = catalog_and_index(args)
        self.queries = make_queries(tracks, args.queries, args.query_length_s, args.seed)
        self.bad = bad_uploads(self.queries[0], args.max_upload_bytes, args.seed)
        self.results["setup"].update(queries=len(self.queries), bytes=len(self.queries[0].body))
        self.limits = {"max_upload_bytes": args.max_upload_bytes}
        if args.max_in_flight:
            self.limits["max_in_flight"] = args.max_in_flight
        self.results["limits"] = self.limits

    def save(self, phase: str, result: dict) -> None:
        self.results["phases"][phase] = result
        self.write()

    def write(self) -> None:
        text = json.dumps(self.results, indent=1, default=float)
        (self.args.out / "results.json").write_text(text)

    @contextmanager
    def served(self, workers: int, phase: str) -> Iterator[Server]:
        """A fresh `acr serve`, warmed up by an unrecorded load of 4 clients."""
        log = self.args.out / f"server-{phase}.log"
        with Server(self.backend, workers, self.limits, log) as server:
            if self.args.pg_data:
                server.database_pids = lambda: postgres_pids(self.args.pg_data)
            asyncio.run(load(server.url, cycle(self.queries), 4, self.args.warmup_s))
            yield server

    def least_disturbed(self, server: Server, clients: int) -> dict:
        args = self.args
        return least_disturbed(
            server, self.queries, clients, args.duration_s, args.attempts, args.wait_for_quiet_s
        )

    def breakdown(self) -> None:
        profile = self.args.out / "recognize.prof" if self.args.profile else None
        result = breakdown(self.backend[1], self.queries, 100, profile)
        print("in process, one query at a time:", json.dumps(result))
        self.save("breakdown", result)

    def levels(self) -> None:
        rows = []
        with self.served(self.args.workers, "levels") as server:
            for clients in self.args.clients:
                rows.append(self.least_disturbed(server, clients))
                print(table(rows[-1:]).splitlines()[-1], flush=True)
        title = f"\n--workers {self.args.workers}, {self.args.duration_s:g} s a level:"
        print(table(rows, title))
        self.save("levels", {"workers": self.args.workers, "rows": rows})

    def workers(self) -> None:
        compared = {}
        for workers in sorted({1, self.args.workers}):
            with self.served(workers, f"workers{workers}") as server:
                compared[workers] = self.least_disturbed(server, 16)
        title = f"\n16 clients, --workers {' vs '.join(map(str, compared))}:"
        print(table(list(compared.values()), title))
        self.save("workers", compared)

    def uploads(self) -> None:
        """Every --bad_every-th upload is a bad one, each kind in turn; the rest are queries."""
        plan = mixed(self.queries, self.bad, self.args.bad_every)
        with self.served(self.args.workers, "uploads") as server:
            summary, outcomes = measured(
                server, plan, self.args.fault_clients, self.args.duration_s
            )
        requests = [self.queries[0], *self.bad]
        summary["per_kind"] = per_kind(requests, outcomes)
        for request in requests:
            seen = summary["per_kind"][request.kind]["seen"]
            print(f"  {request.kind:22s} expected {request.expected} seen {seen}")
        print(table([summary], "\nbad uploads mixed into the load (all requests):"))
        self.save("uploads", summary)

    def kill(self) -> None:
        with self.served(self.args.workers, "kill") as server:
            summary, events = fault_worker(
                server, self.queries, self.args.fault_clients, self.args.duration_s
            )
        print(table([summary], f"\na worker SIGKILLed at {events['killed_at_s']} s ({events}):"))
        print("  in flight at the kill:", summary["in_flight_at_kill"])
        print("  begun 0.5 s after the kill or later:", summary["after_kill"])
        self.save("kill", summary)

    def database(self) -> None:
        if not serve_has_database():
            print("database: skipped (this checkout's `acr serve` has no --database yet)")
            return
        results = {}
        for down_s in self.args.db_down_s:
            restart = restart_pgserver(self.args.pg_data, down_s)
            with self.served(self.args.workers, f"database-down{down_s:g}s") as server:
                summary = fault_database(
                    server, self.queries, restart, self.args.fault_clients, self.args.duration_s
                )
            title = f"\nthe database restarted under load ({down_s:g} s down):"
            print(table([summary], title))
            print("  during the restart:", summary["during_restart"], "; the first 200 after it:",
                  summary["first_200_after_restart_s"], "s")  # fmt: skip
            results[f"down_{down_s:g}s"] = summary
        self.save("database", results)

    def soak(self) -> None:
        args = self.args
        with self.served(args.workers, "soak") as server:
            summary = soak(server, self.queries, args.soak_clients, args.soak_s, args.sample_s)
        memory = {
            key: value for key, value in summary["memory"].items()
            if key not in ("samples", "per_process_last_mb")
        }  # fmt: skip
        print(table([summary], f"\nsoak, {args.soak_s:g} s:"), "\n  memory:", json.dumps(memory))
        self.save("soak", summary)

    def verdicts(self) -> None:
        """The issue's targets (2 cores, file backend) and the 5xx of every phase."""
        met, five_hundreds = verdicts(self.results["phases"])
        self.results.update(targets=TARGETS, met=met, five_hundreds=five_hundreds)
        backend = "" if "--index" in self.backend else " (the targets are the file backend's)"
        print(f"\ntargets{backend}", TARGETS, "met:", met, "\n5xx per phase:", five_hundreds)
        self.write()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    add = parser.add_argument
    add("--index", help="an index directory (acr index) to serve")
    add("--database", help="a database URL, passed to acr serve --database")
    add("--pg_data", help="the pgserver data directory of --database (the restart fault)")
    add("--catalog", help="a track_id,path table to index and to cut queries from")
    add("--tracks", type=int, default=200, help="the catalog's first tracks")
    add("--work", type=Path, default=Path("runs/load_test"), help="the catalog and index built")
    add("--out", type=Path, default=Path("runs/load_test"), help="results.json, server logs")
    add("--index_workers", type=int, default=2, help="acr index --workers")
    add("--phases", nargs="+", choices=PHASES, default=list(PHASES))
    add("--clients", type=int, nargs="+", default=[1, 4, 16, 64])
    add("--duration_s", type=float, default=20.0, help="a load level's length (and a fault's)")
    add("--attempts", type=int, default=3, help="runs of a level disturbed by other processes")
    add("--wait_for_quiet_s", type=float, default=120.0, help="before each level, at most")
    add("--warmup_s", type=float, default=3.0, help="unrecorded load on each new server")
    add("--workers", type=int, default=2, help="acr serve --workers")
    add("--fault_clients", type=int, default=8, help="clients of the fault phases")
    add("--bad_every", type=int, default=4, help="every Nth upload of the mix is a bad one")
    add("--max_upload_bytes", type=int, default=200_000, help="acr serve --limits.*")
    add("--max_in_flight", type=int, help="acr serve --limits.max_in_flight (default: its own)")
    add("--db_down_s", type=float, nargs="+", default=[0.0], help="0: pg_ctl restart")
    add("--soak_s", type=float, default=600.0)
    add("--soak_clients", type=int, default=8)
    add("--sample_s", type=float, default=5.0, help="the soak's memory sampling period")
    add("--queries", type=int, default=200, help="distinct query bodies")
    add("--query_length_s", type=float, default=3.0)
    add("--profile", action="store_true", help="cProfile the in-process path (breakdown)")
    add("--seed", type=int, default=0)
    args = parser.parse_args()
    args.out.mkdir(parents=True, exist_ok=True)
    test = LoadTest(args)
    needs = {
        "breakdown": ("--index" in test.backend, "a file index"),
        "kill": (args.workers > 1, "--workers 2 or more"),
        "database": (bool(args.database and args.pg_data), "--database and --pg_data"),
        "soak": (args.soak_s > 0, "--soak_s > 0"),
    }
    for phase in PHASES:
        runnable, what = needs.get(phase, (True, ""))
        if phase in args.phases and runnable:
            getattr(test, phase)()
        elif phase in args.phases:
            print(f"{phase}: skipped (needs {what})")
    test.verdicts()


if __name__ == "__main__":
    main()
