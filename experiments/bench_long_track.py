"""Peak memory of every process of `acr index` on a catalog holding one long recording.

    python experiments/bench_long_track.py --hours 2 --work /tmp/long-track \
        [--engine hybrid --checkpoint runs/x/checkpoints/best.ckpt]

Writes a generated recording of HOURS (16-bit WAV at --sample-rate) and a 20-s song into WORK
(reused when present), indexes them with `acr index --workers 2`, samples the resident memory
of the command and every process below it every 0.2 s, and prints each one's peak with the
machine. Issue 14's target: every process under 1 GB for a 2-hour 16-kHz WAV.
"""

from __future__ import annotations

import argparse
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import psutil
import soundfile

from acr.audio import save_audio
from acr.runs.environment import machine
from acr.synth import synthesize_track

PIECE_S = 300.0  # the recording is written this much at a time


def write_catalog(folder: Path, hours: float, sample_rate: int) -> Path:
    catalog = folder / "catalog"
    recording = catalog / f"recording_{hours:g}h.wav"
    if not recording.is_file():
        catalog.mkdir(parents=True, exist_ok=True)
        partial = recording.with_suffix(".partial.wav")
        with soundfile.SoundFile(partial, "w", sample_rate, 1, subtype="PCM_16") as sound:
            for piece in range(int(hours * 3600 / PIECE_S)):
                sound.write(synthesize_track(piece, PIECE_S, sample_rate))
        partial.rename(recording)
        save_audio(catalog / "song.wav", synthesize_track(999, 20.0, sample_rate), sample_rate)
    return catalog


def peak_memory(command: list[str]) -> tuple[int, dict[int, tuple[str, float]]]:
    """Run ``command``; its exit status and each process's (name, peak RSS in MB)."""
    # Output to a file, not a pipe: nobody reads a pipe until the end, and a full one (64 KB of
    # progress bars) blocks the command.
    log = tempfile.TemporaryFile()
    process = subprocess.Popen(command, stdout=log, stderr=subprocess.STDOUT)
    root = psutil.Process(process.pid)
    peaks: dict[int, tuple[str, float]] = {}
    while process.poll() is None:
        try:
            tree = [root, *root.children(recursive=True)]
        except psutil.NoSuchProcess:
            break
        for member in tree:
            try:
                rss = member.memory_info().rss / 2**20
                role = "acr index" if member.pid == root.pid else "worker"
            except psutil.NoSuchProcess:
                continue
            if rss > peaks.get(member.pid, ("", 0.0))[1]:
                peaks[member.pid] = (role, rss)
        time.sleep(0.2)
    status = process.wait()
    log.seek(0)
    output = log.read().decode(errors="replace").replace("\r", "\n")
    print("\n".join(line for line in output.splitlines()[-4:]))
    return status, peaks


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--hours", type=float, default=2.0)
    parser.add_argument("--sample-rate", type=int, default=16000)
    parser.add_argument("--engine", default="fingerprint")
    parser.add_argument("--checkpoint", help="an acr fit checkpoint: embedding and hybrid need one")
    parser.add_argument("--work", type=Path, default=Path("/tmp/acr-long-track"))
    options = parser.parse_args()
    print("machine:", machine())
    started = time.perf_counter()
    catalog = write_catalog(options.work, options.hours, options.sample_rate)
    print(f"catalog: {catalog} ({time.perf_counter() - started:.0f} s to write)")
    index = options.work / f"index-{options.engine}"
    shutil.rmtree(index, ignore_errors=True)
    command = [sys.executable, "-m", "acr", "index", "--catalog", str(catalog), "--output",
               str(index), "--engine", options.engine, "--workers", "2"]  # fmt: skip
    if options.checkpoint:
        command += ["--checkpoint", options.checkpoint]
    status, peaks = peak_memory(command)
    for pid, (role, rss) in sorted(peaks.items(), key=lambda item: -item[1][1]):
        if rss > 50:  # the resource tracker and the like
            print(f"  {role:<9} pid {pid:>7}  peak RSS {rss:7.0f} MB")
    largest = max(rss for _, rss in peaks.values())
    print(f"exit status {status}; largest process {largest:.0f} MB (target: under 1024 MB)")


if __name__ == "__main__":
    main()
