"""Encoders, losses and the LightningModule that trains them.

Names are imported on first use (PEP 562): a checkpoint's ``acr.models.ECAPATDNN`` then loads
the encoder without Lightning, which only ``EmbedderModule`` needs (acr.models.trained).
"""

import importlib
from typing import Any

_HOMES = {
    "ECAPATDNN": "acr.models.ecapa",
    "EmbedderModule": "acr.models.embedder",
    "MERTAdapter": "acr.models.mert_adapter",
    "MuQAdapter": "acr.models.muq_adapter",
    "NTXentLoss": "acr.models.losses",
}

__all__ = list(_HOMES)


def __getattr__(name: str) -> Any:
    if name not in _HOMES:
        raise AttributeError(f"module 'acr.models' has no attribute {name!r}")
    return getattr(importlib.import_module(_HOMES[name]), name)
