"""acr: music automatic content recognition with PyTorch Lightning."""

__version__ = "0.2.0"
