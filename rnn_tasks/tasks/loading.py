"""Load any task from its checkpoint alone, without the run's config."""

from __future__ import annotations

from pathlib import Path

import torch

from .base import RecurrentTask
from .classification import ClassificationTask
from .lm import LanguageModelTask
from .tagging import TaggingTask

TASKS: dict[str, type[RecurrentTask]] = {
    "lm": LanguageModelTask,
    "pos": TaggingTask,
    "cls": ClassificationTask,
}


def load_task(ckpt_path: str | Path, map_location: str | torch.device = "cpu") -> RecurrentTask:
    """The trained task saved in `ckpt_path` (any of the three), in eval mode.

    The checkpoint holds plain types only and is read with `weights_only=True`.
    """
    path = Path(ckpt_path)
    if not path.is_file():
        raise FileNotFoundError(f"checkpoint not found: {path}")
    try:
        checkpoint = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as err:  # pickle, zip and weights-only errors all mean the same here
        raise ValueError(
            f"{path} is not a checkpoint that torch.load(weights_only=True) can read "
            f"({type(err).__name__}); rnn-tasks writes them as checkpoints/best.ckpt and "
            f"last.ckpt in a run's folder"
        ) from err
    meta = checkpoint.get("rnn_tasks") if isinstance(checkpoint, dict) else None
    if not meta or meta.get("task") not in TASKS:
        raise ValueError(
            f"{path} is not an rnn-tasks checkpoint (no 'rnn_tasks' entry naming "
            f"one of {sorted(TASKS)})"
        )
    task = TASKS[meta["task"]].load_from_checkpoint(path, map_location=map_location)
    return task.eval()
