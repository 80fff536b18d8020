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


def read_checkpoint(ckpt_path: str | Path) -> dict:
    """An rnn-tasks checkpoint as plain types (`torch.load(weights_only=True)`, on CPU).

    Raises:
        FileNotFoundError: if there is no file at `ckpt_path`.
        ValueError: if the file is not a checkpoint written by rnn-tasks.
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
    return checkpoint


def load_task(ckpt_path: str | Path, map_location: str | torch.device = "cpu") -> RecurrentTask:
    """The trained task saved in `ckpt_path` (any of the three), in eval mode.

    The checkpoint holds plain types only and is read with `weights_only=True`.
    """
    task_name = read_checkpoint(ckpt_path)["rnn_tasks"]["task"]
    task = TASKS[task_name].load_from_checkpoint(
        ckpt_path, map_location=map_location, weights_only=True
    )
    return task.eval()
