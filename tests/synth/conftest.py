"""The song the synth tests render, version and hum."""

import pytest

from acr import synth


@pytest.fixture(scope="package")
def song() -> synth.Song:
    """Song 3, composed for 20 s."""
    return synth.compose_song(3, duration_s=20.0)
