"""LightningDataModules: one small file per data source on the ACRDataModule base."""

from acr.datamodules.base import ACRDataModule
from acr.datamodules.business import BusinessDataModule
from acr.datamodules.catalog import CatalogDataModule
from acr.datamodules.fma import FMADataModule
from acr.datamodules.folder import FolderDataModule
from acr.datamodules.mtg_jamendo import MTGJamendoDataModule
from acr.datamodules.synthetic import SyntheticDataModule

__all__ = [
    "ACRDataModule",
    "BusinessDataModule",
    "CatalogDataModule",
    "FMADataModule",
    "FolderDataModule",
    "MTGJamendoDataModule",
    "SyntheticDataModule",
]
