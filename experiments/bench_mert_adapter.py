"""MERTAdapter throughput on this machine: 1-s segments per second, embedding (frozen backbone,
inference) and training (anchor and positive through the backbone, NT-Xent, adapter update).

    python experiments/bench_mert_adapter.py [--backbone DIR] [--threads N]

Without --backbone it measures two randomly initialised backbones that transformers builds
locally: the tiny one the tests train, and one of MERT-v1-95M's architecture (HuBERT-base,
94.4M parameters), whose speed is that of the real model since weights do not change cost.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

import torch

from acr.models import MERTAdapter, NTXentLoss
from acr.runs.environment import machine

sys.path.insert(0, str(Path(__file__).parents[1] / "tests"))
from fixtures_models import (  # noqa: E402  (the test suite's tiny backbone, on purpose)
    MERT_95M,
    MERT_SAMPLE_RATE,
    TINY_HUBERT,
    TINY_SAMPLE_RATE,
    write_hubert,
)

SEGMENT_S = 1.0


def segments_per_second(run, segments: int, repeats: int) -> float:
    """Best of ``repeats`` timed calls after one warm-up call."""
    run()
    best = min(_timed(run) for _ in range(repeats))
    return segments / best


def _timed(run) -> float:
    started = time.perf_counter()
    run()
    return time.perf_counter() - started


def measure(name: str, backbone: str, sample_rate: int, batch: int, repeats: int) -> None:
    adapter = MERTAdapter(backbone, sample_rate=sample_rate)
    parameters = sum(p.numel() for p in adapter.backbone.parameters())
    waveform = torch.randn(batch, int(SEGMENT_S * sample_rate)) * 0.1
    loss = NTXentLoss(0.05)
    optimizer = torch.optim.AdamW(p for p in adapter.parameters() if p.requires_grad)

    def embed() -> None:
        adapter.eval()
        with torch.inference_mode():
            adapter(waveform)

    def train_step() -> None:  # batch/2 pairs: 'batch' segments through the backbone
        adapter.train()
        anchors, positives = waveform.chunk(2)
        optimizer.zero_grad()
        loss(adapter(anchors), adapter(positives)).backward()
        optimizer.step()

    embedding = segments_per_second(embed, batch, repeats)
    training = segments_per_second(train_step, batch, repeats)
    print(
        f"{name}: backbone {parameters / 1e6:.2f}M parameters, batch {batch} x {SEGMENT_S:g} s"
        f" at {sample_rate} Hz: embedding {embedding:.1f} segments/s,"
        f" training {training:.1f} segments/s ({training / 2:.1f} pairs/s)"
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--backbone", help="a saved backbone folder (e.g. real MERT weights)")
    parser.add_argument("--threads", type=int, default=None)
    parser.add_argument("--repeats", type=int, default=3)
    options = parser.parse_args()
    if options.threads:
        torch.set_num_threads(options.threads)
    print("machine:", machine("transformers"))
    if options.backbone:
        measure(options.backbone, options.backbone, MERT_SAMPLE_RATE, 16, options.repeats)
        return
    with tempfile.TemporaryDirectory() as folder:
        tiny = write_hubert(Path(folder) / "tiny", TINY_HUBERT, TINY_SAMPLE_RATE)
        measure("tiny test backbone", str(tiny), TINY_SAMPLE_RATE, 64, options.repeats)
        base = write_hubert(Path(folder) / "mert-95m", MERT_95M, MERT_SAMPLE_RATE)
        measure("MERT-v1-95M architecture", str(base), MERT_SAMPLE_RATE, 16, options.repeats)


if __name__ == "__main__":
    main()
