"""LightningDataModules: one small file per data source on the ACRDataModule base."""

from acr.datamodules.base import ACRDataModule
from acr.datamodules.synthetic import SyntheticDataModule

__all__ = ["ACRDataModule", "SyntheticDataModule"]
