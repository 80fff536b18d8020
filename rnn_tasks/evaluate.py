"""`evaluate(cfg) -> metrics` behind `scripts/evaluate.py`: a checkpoint on a split or a file."""

from __future__ import annotations

import lightning as L
from hydra.utils import instantiate
from omegaconf import DictConfig, OmegaConf

from .tasks import load_task
from .train import checkpoint_metadata


def evaluate(cfg: DictConfig) -> dict[str, float]:
    """Metrics of `cfg.ckpt_path` on `cfg.split` ("test" or "validation").

    The data config is the one stored in the checkpoint unless `cfg.data` names one; its
    non-null keys (e.g. `test_file`) override the stored ones.
    """
    if cfg.split not in ("test", "validation"):
        raise ValueError(f"split must be one of ['test', 'validation'], got {cfg.split!r}")
    task = load_task(cfg.ckpt_path)
    given = {
        k: v for k, v in OmegaConf.to_container(cfg.data, resolve=True).items() if v is not None
    }
    data_cfg = given if "_target_" in given else {**(task.hparams.get("data") or {}), **given}
    if "_target_" not in data_cfg:
        raise ValueError(f"{cfg.ckpt_path} stores no data config: name one with data=...")
    datamodule = instantiate(OmegaConf.create(data_cfg))
    datamodule.adopt(checkpoint_metadata(cfg.ckpt_path))
    trainer = L.Trainer(
        accelerator=cfg.accelerator,
        devices=1,
        logger=False,
        enable_checkpointing=False,
        enable_progress_bar=False,
    )
    run = trainer.test if cfg.split == "test" else trainer.validate
    results = run(task, datamodule=datamodule, verbose=False)
    return {k: float(v) for k, v in results[0].items()}
