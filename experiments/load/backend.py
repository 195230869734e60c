"""What `acr serve` is given to serve: an index or database named on the command line, or
an index built here with `acr index` from a catalog's first tracks (or synthetic songs), and
the tracks the queries are cut from."""

from __future__ import annotations

import argparse
import subprocess
import sys
import time

import pandas as pd
import soundfile

from experiments.load.uploads import SAMPLE_RATE_HZ


def catalog_and_index(args: argparse.Namespace) -> tuple[pd.DataFrame, list[str], dict]:
    """The tracks to cut queries from, `acr serve`'s backend options, and how they were made."""
    from acr.data.catalogs import read_catalog

    if args.index or args.database:
        backend = ["--index", args.index] if args.index else []
        backend += ["--database", args.database] if args.database else []
        if args.catalog:
            tracks = read_catalog(args.catalog).head(args.tracks)
        elif args.index:
            from acr.retrieval.changes import list_index

            tracks = list_index(args.index).tracks
        else:
            sys.exit("load_test: --database needs --catalog (the audio of the tracks it holds)")
        return tracks[["track_id", "path"]], backend, {"given": backend}
    args.work.mkdir(parents=True, exist_ok=True)
    if args.catalog:
        tracks = read_catalog(args.catalog).head(args.tracks)[["track_id", "path"]]
    else:  # no catalog: synthetic songs (acr.synth), 60 s each
        from acr.synth import synthesize_track

        folder = args.work / "synthetic"
        folder.mkdir(exist_ok=True)
        rows = []
        for seed in range(args.tracks):
            path = folder / f"song{seed:04d}.wav"
            if not path.is_file():
                soundfile.write(path, synthesize_track(seed, 60.0), SAMPLE_RATE_HZ)
            rows.append({"track_id": f"song{seed:04d}", "path": str(path.resolve())})
        tracks = pd.DataFrame(rows)
    table = args.work / "catalog.csv"
    tracks.to_csv(table, index=False)
    index = args.work / "index"
    command = [sys.executable, "-m", "acr", "index", "--catalog", str(table), "--output",
               str(index), "--workers", str(args.index_workers)]  # fmt: skip
    build = {"command": " ".join(command[1:]), "tracks": len(tracks)}
    if (index / "index.json").is_file():
        from acr.retrieval.changes import list_index

        if set(list_index(str(index)).tracks["track_id"]) != set(tracks["track_id"]):
            sys.exit(f"load_test: {index} holds other tracks than the catalog; use a new --work")
        build["reused"] = True
    else:
        started = time.perf_counter()
        result = subprocess.run(command, capture_output=True, text=True)
        if result.returncode != 0:
            sys.exit(
                f"load_test: acr index failed:\n{result.stdout[-2000:]}{result.stderr[-2000:]}"
            )
        build["seconds"] = round(time.perf_counter() - started, 1)
    return tracks, ["--index", str(index)], build
