"""The `acr` entry point (acr.cli): help for every command, dispatch to LightningCLI or to a
command's module."""

import pytest

from acr.cli import main


def test_overview_lists_every_command(capsys: pytest.CaptureFixture) -> None:
    with pytest.raises(SystemExit):
        main(["--help"])
    out = capsys.readouterr().out
    for command in ("fit", "index", "recognize", "evaluate", "fuse", "data"):
        assert f"  {command}" in out


def test_help_lists_subcommands(capsys: pytest.CaptureFixture) -> None:
    with pytest.raises(SystemExit) as exit_info:
        main(["--help"])
    assert exit_info.value.code == 0
    assert "fit" in capsys.readouterr().out
    with pytest.raises(SystemExit) as exit_info:
        main(["fit", "--help"])
    assert exit_info.value.code == 0
    assert "--ckpt_path" in capsys.readouterr().out
