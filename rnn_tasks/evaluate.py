"""`evaluate(cfg) -> metrics` behind `scripts/evaluate.py`: a checkpoint on a split or a file."""

from __future__ import annotations

import lightning as L
import torch
from hydra.utils import instantiate
from omegaconf import DictConfig, OmegaConf

from .tasks import RecurrentTask, ensemble, load_task
from .train import checkpoint_metadata, one_console_handler

LOOKUP_KEYS = ("lowercase", "zero_digits")  # how words meet the vocabulary: set by training


def evaluate(cfg: DictConfig) -> dict[str, float]:
    """Metrics of `cfg.ckpt_path` on `cfg.split` ("test" or "validation").

    A list of checkpoints (`ckpt_path=[a.ckpt,b.ckpt]`, an ensemble's members) is evaluated
    as the average of their probabilities. The data config is the one stored in the (first)
    checkpoint, with the non-null keys of `cfg.data` (e.g. `test_file`, `path`) set over
    it. The word lookup keys stay the checkpoint's whatever `cfg.data` says.
    """
    if cfg.split not in ("test", "validation"):
        raise ValueError(f"split must be one of ['test', 'validation'], got {cfg.split!r}")
    one_console_handler()
    if cfg.get("threads"):
        torch.set_num_threads(cfg.threads)
    paths = list(cfg.ckpt_path) if OmegaConf.is_list(cfg.ckpt_path) else [cfg.ckpt_path]
    task = load_checkpoints(paths)
    data_cfg = evaluation_data(task, OmegaConf.to_container(cfg.data, resolve=True), paths[0])
    datamodule = instantiate(OmegaConf.create(data_cfg))
    datamodule.adopt(checkpoint_metadata(paths[0]))
    return run_split(task, datamodule, cfg.split, cfg.accelerator)


def evaluation_data(task: RecurrentTask, overrides: dict, ckpt_path: str) -> dict:
    """The data config `task` was trained with, `overrides`' non-null keys set over it; the
    word lookup keys stay the task's, whose vocabulary was built with them."""
    stored = task.hparams.get("data")
    if not stored:
        raise ValueError(f"{ckpt_path} stores no data config to evaluate on")
    given = {k: v for k, v in overrides.items() if v is not None}
    lookup = {k: task.hparams[k] for k in LOOKUP_KEYS if k in task.hparams and k in stored}
    return {**stored, **given, **lookup}


def load_checkpoints(paths: list[str]) -> RecurrentTask:
    """The task of one checkpoint, or the ensemble of several (probabilities averaged)."""
    tasks = [load_task(path) for path in paths]
    if len(tasks) == 1:
        return tasks[0]
    try:
        return ensemble(tasks)
    except ValueError as e:  # "task i ..." counts in the order of `paths`
        raise ValueError(f"ckpt_path={paths}: {e}") from e


def run_split(
    task: RecurrentTask, datamodule, split: str, accelerator: str = "cpu", verbose: bool = False
) -> dict[str, float]:
    """`task`'s metrics on `split` ("test" or "validation"): no logger, no checkpoints."""
    trainer = L.Trainer(
        accelerator=accelerator,
        devices=1,
        logger=False,
        enable_checkpointing=False,
        enable_progress_bar=False,
    )
    run = trainer.test if split == "test" else trainer.validate
    results = run(task, datamodule=datamodule, verbose=verbose)
    return {k: float(v) for k, v in results[0].items()}
