"""acr.files: files written whole, readable by whoever the umask allows."""

from __future__ import annotations

import os
import stat
import unicodedata
from pathlib import Path

from hypothesis import given, settings
from hypothesis import strategies as st

from acr.files import safe_file_name, write_json, write_text


def test_atomic_writes_get_the_mode_the_umask_gives_a_new_file(tmp_path):
    previous = os.umask(0o022)
    try:
        write_text(tmp_path / "skipped.csv", "track_id,path,reason\n")
        write_json(tmp_path / "index.json", {"complete": True})
        plain = tmp_path / "plain.txt"
        plain.write_text("x")
    finally:
        os.umask(previous)
    expected = stat.S_IMODE(plain.stat().st_mode)
    assert expected == 0o644
    for name in ("skipped.csv", "index.json"):
        assert stat.S_IMODE((tmp_path / name).stat().st_mode) == expected, name


@settings(max_examples=200, deadline=None)
@given(first=st.text(), second=st.text())
def test_file_names_from_ids_stay_in_their_folder_and_never_collide(
    first: str, second: str
) -> None:
    name = safe_file_name(first, ".wav")
    assert Path(name).name == name and name not in (".", "..") and not name.startswith(".")
    assert "/" not in name and "\\" not in name and "\x00" not in name
    assert not any(unicodedata.category(character) == "Cc" for character in name)
    assert len(name.encode()) <= 255 and name.endswith(".wav")
    assert (safe_file_name(second, ".wav") == name) == (first == second)
