"""What every task shares: optimiser and learning-rate schedule, checkpoint tagging."""

from __future__ import annotations

from typing import ClassVar, Literal

import lightning as L
import torch

from .. import __version__

Optimizer = Literal["sgd", "adam", "adamw"]
OPTIMIZERS = {"sgd": torch.optim.SGD, "adam": torch.optim.Adam, "adamw": torch.optim.AdamW}
STAGES = ("train", "val", "test")


def check_choice(name: str, value, options) -> None:
    """Raise a ValueError naming the argument and its valid values."""
    if value not in options:
        raise ValueError(f"{name} must be one of {sorted(options)}, got {value!r}")


class RecurrentTask(L.LightningModule):
    """Base of the three tasks. Hyperparameters are plain types (see `save_hyperparameters`
    in the subclasses), so checkpoints load with `torch.load(weights_only=True)`.

    Optimiser arguments (every subclass takes them):
        optimizer: "sgd", "adam" or "adamw".
        lr, weight_decay, momentum (SGD only).
        lr_decay: multiply the learning rate by this when `val/loss` stops improving
            (`ReduceLROnPlateau`); 1.0 switches the schedule off.
        lr_patience: validation epochs without improvement before a decay.
        lr_milestones: epochs at whose start the learning rate is multiplied by `lr_decay`
            (`MultiStepLR`, Zaremba et al. 2014's schedule), instead of on a plateau:
            a run with a fixed time budget anneals when it still has epochs left.
    """

    task_name: ClassVar[str]

    def _check_optimizer(self) -> None:
        hp = self.hparams
        check_choice("optimizer", hp.optimizer, OPTIMIZERS)
        if hp.lr <= 0:
            raise ValueError(f"lr must be > 0, got {hp.lr}")
        if not 0 < hp.lr_decay <= 1:
            raise ValueError(f"lr_decay must be in (0, 1], got {hp.lr_decay}")
        milestones = hp.get("lr_milestones") or []
        if any(not isinstance(m, int) or m < 1 for m in milestones) or milestones != sorted(
            set(milestones)
        ):
            raise ValueError(f"lr_milestones must be increasing epochs >= 1, got {milestones}")

    def configure_optimizers(self):
        hp = self.hparams
        extra = {"momentum": hp.momentum} if hp.optimizer == "sgd" else {}
        opt = OPTIMIZERS[hp.optimizer](
            self._parameter_groups(), lr=hp.lr, weight_decay=hp.weight_decay, **extra
        )
        if hp.lr_decay >= 1.0:
            return opt
        if hp.get("lr_milestones"):
            steps = torch.optim.lr_scheduler.MultiStepLR(opt, hp.lr_milestones, hp.lr_decay)
            return {"optimizer": opt, "lr_scheduler": {"scheduler": steps, "interval": "epoch"}}
        plateau = torch.optim.lr_scheduler.ReduceLROnPlateau(
            opt, mode="min", factor=hp.lr_decay, patience=hp.lr_patience
        )
        return {"optimizer": opt, "lr_scheduler": {"scheduler": plateau, "monitor": "val/loss"}}

    def _parameter_groups(self) -> list[dict]:
        """The trained parameters; an embedding table with frozen pretrained rows goes in a
        group without weight decay, which would move those rows though their gradient is 0
        (Adam adds the decay to the gradient, AdamW shrinks the weights directly)."""
        partly_frozen = {
            id(m.embedding.weight)
            for m in self.modules()
            if getattr(m, "frozen_rows", None) is not None
        }
        params = [p for p in self.parameters() if p.requires_grad]
        groups = [
            {"params": [p for p in params if id(p) not in partly_frozen]},
            {"params": [p for p in params if id(p) in partly_frozen], "weight_decay": 0.0},
        ]
        return [g for g in groups if g["params"]]

    def on_save_checkpoint(self, checkpoint: dict) -> None:
        # Lets `load_task(path)` pick the right class without the run's config.
        checkpoint["rnn_tasks"] = {"task": self.task_name, "version": __version__}

    @property
    def num_parameters(self) -> int:
        return sum(p.numel() for p in self.parameters() if p.requires_grad)
