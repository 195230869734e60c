"""``python -m acr`` is the ``acr`` command."""

from acr.cli import main

if __name__ == "__main__":
    main()
