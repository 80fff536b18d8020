"""LightningDataModules for the three tasks, over Hugging Face `datasets` sources
(the Hub, local files, or the built-in demo data)."""

from .classification import ClassificationDataModule
from .errors import DataFormatError, DatasetUnavailableError
from .lm import LMDataModule
from .tagging import TaggingDataModule

__all__ = [
    "LMDataModule",
    "TaggingDataModule",
    "ClassificationDataModule",
    "DataFormatError",
    "DatasetUnavailableError",
]
