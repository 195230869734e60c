"""Time acr.synth.synthesize_track: the embedded data set must build in under a minute
(200 tracks of 30 s at 16 kHz on 2 CPU cores), so a plain single-threaded loop has to do it.

    python experiments/bench_synth.py --tracks 200 --duration-s 30
"""

import argparse
import sys
import time

from acr.runs.environment import machine
from acr.synth import synthesize_track


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--tracks", type=int, default=200)
    parser.add_argument("--duration-s", type=float, default=30.0)
    parser.add_argument("--sample-rate", type=int, default=16000)
    parser.add_argument("--version", type=int, default=0, help="orchestration to render")
    args = parser.parse_args(argv)

    wall_start_s, cpu_start_s = time.perf_counter(), time.process_time()
    for seed in range(args.tracks):
        synthesize_track(seed, args.duration_s, args.sample_rate, args.version)
    wall_s = time.perf_counter() - wall_start_s
    cpu_s = time.process_time() - cpu_start_s

    audio_s = args.tracks * args.duration_s
    print(f"tracks: {args.tracks} x {args.duration_s:g} s at {args.sample_rate} Hz")
    print(f"total: {wall_s:.2f} s wall, {cpu_s:.2f} s CPU")
    print(f"per track: {wall_s / args.tracks:.3f} s wall, {cpu_s / args.tracks:.3f} s CPU")
    print(f"speed: {audio_s / wall_s:.0f}x real time")
    print("machine:", machine("numpy", "scipy"))


if __name__ == "__main__":
    sys.exit(main())
