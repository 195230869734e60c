"""``python -m acr`` is the ``acr`` command."""

from acr.cli import run

if __name__ == "__main__":
    raise SystemExit(run())
