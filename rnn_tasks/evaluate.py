"""`evaluate(cfg) -> metrics` behind `scripts/evaluate.py`: a checkpoint on a split or a file."""

from __future__ import annotations

import lightning as L
from hydra.utils import instantiate
from omegaconf import DictConfig, OmegaConf

from .nn import reduce_precision
from .runtime import set_up_process
from .settings import fixed_data_changes, with_legacy_defaults
from .tasks import RecurrentTask, ensemble, load_task
from .train import data_metadata


def evaluate(cfg: DictConfig) -> dict[str, float]:
    """Metrics of `cfg.ckpt_path` on `cfg.split` ("test" or "validation").

    A list of checkpoints (`ckpt_path=[a.ckpt,b.ckpt]`, an ensemble's members) is evaluated
    as the average of their probabilities. The data config is the one stored in the (first)
    checkpoint, with the non-null keys of `cfg.data` (e.g. `test_file`, `path`) set over
    it; the settings that decide its split and word lookup cannot change.
    """
    if cfg.split not in ("test", "validation"):
        raise ValueError(f"split must be one of ['test', 'validation'], got {cfg.split!r}")
    set_up_process(cfg.get("threads"))
    paths = list(cfg.ckpt_path) if OmegaConf.is_list(cfg.ckpt_path) else [cfg.ckpt_path]
    task = reduce_precision(load_checkpoints(paths), cfg.get("precision", "float32"), inplace=True)
    data_cfg = evaluation_data(task, OmegaConf.to_container(cfg.data, resolve=True), paths[0])
    datamodule = instantiate(OmegaConf.create(data_cfg))
    datamodule.adopt(data_metadata(task.hparams))  # an ensemble's are its first member's
    return run_split(task, datamodule, cfg.split, cfg.accelerator)


def evaluation_data(task: RecurrentTask, overrides: dict, ckpt_path: str) -> dict:
    """The data config `task` was trained with, `overrides`' non-null keys set over it.

    Raises:
        ValueError: if an override changes how the data is split or looked up: another
            split would test on training examples, another lookup misses the vocabulary.
    """
    stored = task.hparams.get("data")
    if not stored:
        raise ValueError(f"{ckpt_path} stores no data config to evaluate on")
    stored = with_legacy_defaults(stored)  # an older checkpoint's split, not today's default
    data = {**stored, **{k: v for k, v in overrides.items() if v is not None}}
    differ = fixed_data_changes(stored, data)
    if differ:
        raise ValueError(
            f"{ckpt_path} was trained with {', '.join(differ)}; evaluating it that way "
            f"would re-split or misread the data. To test on other data, give "
            f"data.test_file=<a file in the task's format>"
        )
    return data


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
    """`task`'s metrics on `split` ("test" or "validation"): no logger, no checkpoints.

    Raises:
        ValueError: if the split (or the `test_file` that replaces it) holds no examples.
    """
    trainer = L.Trainer(
        accelerator=accelerator,
        devices=1,
        logger=False,
        enable_checkpointing=False,
        enable_progress_bar=False,
    )
    run = trainer.test if split == "test" else trainer.validate
    results = run(task, datamodule=datamodule, verbose=verbose)
    if not results or not results[0]:  # Lightning runs no batch and returns []
        test_file = getattr(datamodule, "test_file", None)
        where = test_file if split == "test" and test_file is not None else f"the {split} split"
        raise ValueError(f"{where} holds no examples")
    return {k: float(v) for k, v in results[0].items()}
