"""False alarms of `acr monitor` on hours of music the index does not hold: every held-out
track is scanned as a recording (acr.monitor.dedup.find_duplicates, the scan `acr monitor`
runs), and every segment found is a false alarm. Prints the rate per hour with a 95 % exact
Poisson interval (Garwood), the segments themselves, and the machine.

    python experiments/bench_false_alarms.py --index runs/no_match/index \
        --tracks runs/no_match/held_test.csv

The mixes of bench_monitor.py hold only ~20 minutes of out-of-catalog audio per two hours;
this measures the rate on all of the held-out music.
"""

from __future__ import annotations

import argparse
import time

from scipy.stats import chi2

from acr.audio import audio_info
from acr.data.catalogs import read_catalog
from acr.monitor.dedup import find_duplicates
from acr.monitor.scan import ScanSettings
from acr.retrieval.store import IndexState, live_tracks
from acr.runs.environment import machine


def poisson_interval(count: int, exposure: float) -> tuple[float, float]:
    """Exact 95 % interval of a Poisson rate (Garwood 1936): never zero-width."""
    low = chi2.ppf(0.025, 2 * count) / 2 if count else 0.0
    high = chi2.ppf(0.975, 2 * count + 2) / 2
    return low / exposure, high / exposure


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--index", required=True)
    parser.add_argument("--tracks", required=True, help="tracks the index does not hold")
    args = parser.parse_args()
    tracks = read_catalog(args.tracks)
    held = set(live_tracks(args.index, IndexState.read(args.index)))
    overlap = sorted(set(tracks["track_id"]) & held)
    if overlap:
        raise SystemExit(
            f"{args.tracks}: {len(overlap)} tracks are in the index, e.g. {overlap[0]}"
        )
    started = time.perf_counter()
    found = find_duplicates(args.index, tracks, exclude_self=False, settings=ScanSettings())
    seconds = time.perf_counter() - started
    hours = sum(audio_info(path).duration_s for path in tracks["path"]) / 3600
    low, high = poisson_interval(len(found), hours)
    print("machine:", machine())
    print(
        f"{len(tracks)} out-of-catalog tracks, {hours:.2f} h, scanned in {seconds:.0f} s "
        f"({hours * 3600 / seconds:.0f}x real time); skipped {len(found.attrs['skipped'])}"
    )
    print(
        f"false alarms: {len(found)} = {len(found) / hours:.2f} per hour "
        f"[{low:.2f}, {high:.2f}] (95 % Poisson)"
    )
    if len(found):
        print(found.to_string(index=False))


if __name__ == "__main__":
    main()
