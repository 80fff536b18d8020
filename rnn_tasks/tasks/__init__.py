"""LightningModules for the three tasks: loss, metrics, logging and optimisers."""

from .base import RecurrentTask
from .classification import ClassificationTask
from .ensemble import ensemble
from .lm import LanguageModelTask
from .loading import TASKS, load_task
from .tagging import TaggingTask

__all__ = [
    "RecurrentTask",
    "LanguageModelTask",
    "TaggingTask",
    "ClassificationTask",
    "TASKS",
    "load_task",
    "ensemble",
]
