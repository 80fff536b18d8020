"""Loggers whose packages are optional extras: a run that asks for one which is not installed
stops before training with the command that installs it, not with Lightning's traceback."""

from __future__ import annotations

import importlib

from omegaconf import DictConfig, OmegaConf

# A logger's `_target_` -> (the `logger=` choice, the packages any one of which it runs on,
# the extra of pyproject.toml that installs one). Lightning's TensorBoardLogger writes
# through tensorboard, or tensorboardX when that is what is installed.
OPTIONAL = {
    "lightning.pytorch.loggers.TensorBoardLogger": (
        "tensorboard",
        ("tensorboard", "tensorboardX"),
        "tensorboard",
    ),
}


def importable(module: str) -> bool:
    try:
        importlib.import_module(module)
    except ImportError:
        return False
    return True


def check_logger_available(cfg: DictConfig) -> None:
    """Raises ValueError if `cfg.logger` needs a package that is not installed.

    The message names the command that installs it, e.g. `pip install -e ".[tensorboard]"`.
    """
    target = OmegaConf.select(cfg, "logger._target_", default=None)
    if target not in OPTIONAL:  # no logger (`~logger`), or one Lightning always has (csv)
        return
    choice, modules, extra = OPTIONAL[target]
    if not any(importable(m) for m in modules):
        raise ValueError(
            f"logger={choice} needs the {modules[0]} package, which is not installed: "
            f'pip install -e ".[{extra}]" (or log to metrics.csv with logger=csv)'
        )
