"""``acr serve`` as a user starts it: its own process, 127.0.0.1 unless told otherwise."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
from pathlib import Path

import httpx
import pytest

START_TIMEOUT_S = 60.0


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def outward_address() -> str | None:
    """This machine's address on its default route (no packet is sent), if it has one."""
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as probe:
        try:
            probe.connect(("10.254.254.254", 1))
            address = probe.getsockname()[0]
        except OSError:
            return None
    return None if address.startswith("127.") else address


def test_acr_serve_binds_to_loopback_by_default(calibrated_index: Path, tmp_path: Path) -> None:
    port = free_port()
    log = tmp_path / "serve.log"
    environment = {**os.environ, "ACR_SERVE_TOKEN": ""}
    with log.open("w") as output:
        process = subprocess.Popen(
            [sys.executable, "-m", "acr", "serve", "--index", str(calibrated_index),
             "--port", str(port)],
            stdout=output, stderr=subprocess.STDOUT, env=environment,
        )  # fmt: skip
    try:
        deadline = time.monotonic() + START_TIMEOUT_S
        while True:
            assert process.poll() is None, log.read_text()
            assert time.monotonic() < deadline, log.read_text()
            try:
                health = httpx.get(f"http://127.0.0.1:{port}/healthz", timeout=2)
                break
            except httpx.TransportError:
                time.sleep(0.2)
        assert health.json()["tracks"] == 6
        assert f"http://127.0.0.1:{port}" in log.read_text()
        docs = httpx.get(f"http://127.0.0.1:{port}/openapi.json").json()
        assert {"/v1/recognize", "/v1/tracks", "/healthz", "/metrics"} <= set(docs["paths"])
        assert httpx.get(f"http://127.0.0.1:{port}/docs").status_code == 200
        address = outward_address()
        if address is not None:
            with pytest.raises(OSError):
                socket.create_connection((address, port), timeout=2).close()
    finally:
        process.terminate()
        process.wait(timeout=30)


def test_acr_serve_refuses_a_missing_index_and_impossible_limits(
    calibrated_index: Path, tmp_path: Path, capsys: pytest.CaptureFixture
) -> None:
    from acr.cli import main

    assert main(["serve", "--index", str(tmp_path / "nowhere")]) == 1
    assert "nowhere" in capsys.readouterr().err
    limits = ["--limits.max_in_flight", "0"]
    assert main(["serve", "--index", str(calibrated_index), *limits]) == 1
    assert "limits.max_in_flight must be >= 1" in capsys.readouterr().err
