"""`evaluate(cfg) -> metrics` behind `scripts/evaluate.py`: a checkpoint on a split or a file."""

from __future__ import annotations

import lightning as L
from hydra.utils import instantiate
from omegaconf import DictConfig, OmegaConf

from .tasks import RecurrentTask, ensemble, load_task
from .train import checkpoint_metadata


def evaluate(cfg: DictConfig) -> dict[str, float]:
    """Metrics of `cfg.ckpt_path` on `cfg.split` ("test" or "validation").

    A list of checkpoints (`ckpt_path=[a.ckpt,b.ckpt]`, an ensemble's members) is evaluated
    as the average of their probabilities. The data config is the one stored in the (first)
    checkpoint unless `cfg.data` names one; its non-null keys (e.g. `test_file`) override
    the stored ones.
    """
    if cfg.split not in ("test", "validation"):
        raise ValueError(f"split must be one of ['test', 'validation'], got {cfg.split!r}")
    paths = list(cfg.ckpt_path) if OmegaConf.is_list(cfg.ckpt_path) else [cfg.ckpt_path]
    task = load_checkpoints(paths)
    given = {
        k: v for k, v in OmegaConf.to_container(cfg.data, resolve=True).items() if v is not None
    }
    data_cfg = given if "_target_" in given else {**(task.hparams.get("data") or {}), **given}
    if "_target_" not in data_cfg:
        raise ValueError(f"{paths[0]} stores no data config: name one with data=...")
    datamodule = instantiate(OmegaConf.create(data_cfg))
    datamodule.adopt(checkpoint_metadata(paths[0]))
    return run_split(task, datamodule, cfg.split, cfg.accelerator)


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
