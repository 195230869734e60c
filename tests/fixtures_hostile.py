"""Hostile audio files for tests/test_hostile_inputs.py (each maker writes one file, or entry,
at a path; makers that need a real song get it from acr.synth), and ``run``: the CLI in
process with its exit status, stdout and stderr."""

from __future__ import annotations

import io
import os
import struct
from contextlib import redirect_stderr, redirect_stdout
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import soundfile

from acr.audio import save_audio
from acr.cli import main
from acr.synth import synthesize_track

RATE = 16000


def song(seed: int, seconds: float, rate: int = RATE) -> np.ndarray:
    return synthesize_track(seed, seconds, rate)


def random_bytes(path: Path) -> None:
    path.write_bytes(np.random.default_rng(len(path.name)).bytes(4096))


def empty(path: Path) -> None:
    path.write_bytes(b"")


def truncated(path: Path) -> None:
    """A real FLAC of 6 s cut in half (its header still says 6 s)."""
    soundfile.write(path, song(7, 6.0), RATE, format="FLAC")
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 2])


def silent(path: Path) -> None:
    soundfile.write(path, np.zeros(4 * RATE, np.float32), RATE)


def all_nan(path: Path) -> None:
    soundfile.write(path, np.full(4 * RATE, np.nan, np.float32), RATE, subtype="FLOAT")


def one_sample(path: Path) -> None:
    soundfile.write(path, song(8, 1.0)[:1], RATE)


def rate_50hz(path: Path) -> None:
    soundfile.write(path, song(9, 1.0)[:200], 50)


def claims_2gb(path: Path) -> None:
    """A WAV whose header claims 2 GB of data over 20 samples."""
    soundfile.write(path, song(10, 1.0)[:20], RATE, subtype="PCM_16")
    data = bytearray(path.read_bytes())
    at = data.find(b"data")
    data[at + 4 : at + 8] = struct.pack("<I", 2_000_000_000)
    data[4:8] = struct.pack("<I", 2_000_000_036)
    path.write_bytes(bytes(data))


def folder(path: Path) -> None:
    path.mkdir()
    (path / "inside.txt").write_text("a folder named like audio")


def broken_link(path: Path) -> None:
    os.symlink(path.with_name("nowhere-at-all.wav"), path)


def eight_channels(path: Path, seed: int, seconds: float) -> None:
    """Song ``seed`` on 8 channels at different gains: its mono mix is the song."""
    gains = np.linspace(0.4, 1.0, 8, dtype=np.float32)
    soundfile.write(path, song(seed, seconds)[:, None] * gains, RATE, subtype="FLOAT")


def rate_192khz(path: Path, seed: int, seconds: float) -> None:
    """Song ``seed`` rendered at 192 kHz."""
    soundfile.write(path, song(seed, seconds, 192000), 192000, subtype="PCM_24")


def plain(path: Path, seed: int, seconds: float) -> None:
    save_audio(path, song(seed, seconds), RATE)  # any name, a non-UTF-8 one too


def aac_m4a(path: Path, seed: int, seconds: float) -> None:
    """Song ``seed`` as AAC in an m4a, which libsndfile cannot read (acr.ffmpeg decodes it)."""
    import av

    audio = song(seed, seconds, 44100)[None, :]
    with av.open(str(path), "w", format="ipod") as output:
        stream = output.add_stream("aac", rate=44100, layout="mono")
        for first in range(0, audio.shape[1], 1024):
            chunk = np.ascontiguousarray(audio[:, first : first + 1024])
            frame = av.AudioFrame.from_ndarray(chunk, format="fltp", layout="mono")
            frame.sample_rate, frame.pts = 44100, first
            output.mux(stream.encode(frame))
        output.mux(stream.encode(None))


@dataclass
class Run:
    status: int
    out: str
    err: str

    def error_line(self, command: str) -> str:
        """The one error line of a failed command (progress bars aside)."""
        lines = [line for line in self.err.replace("\r", "\n").splitlines() if "error" in line]
        assert len(lines) == 1, self.err
        assert lines[0].startswith(f"acr {command}: error: "), lines[0]
        return lines[0]


def run(*argv: str | Path) -> Run:
    """``acr ARGV`` in process; a traceback would raise here and fail the test."""
    out, err = io.StringIO(), io.StringIO()
    with redirect_stdout(out), redirect_stderr(err):
        status = main([str(argument) for argument in argv])
    assert "Traceback" not in err.getvalue()
    return Run(status, out.getvalue(), err.getvalue())
