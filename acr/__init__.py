"""acr: music automatic content recognition with PyTorch Lightning."""

__version__ = "0.3.0.dev0"
