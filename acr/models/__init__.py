"""Encoders, losses and the LightningModule that trains them."""

from acr.models.ecapa import ECAPATDNN
from acr.models.embedder import EmbedderModule
from acr.models.losses import NTXentLoss
from acr.models.mert_adapter import MERTAdapter

__all__ = ["ECAPATDNN", "EmbedderModule", "MERTAdapter", "NTXentLoss"]
