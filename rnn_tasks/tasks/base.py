"""What every task shares: optimiser and learning-rate schedule, checkpoint tagging."""

from __future__ import annotations

import inspect
from typing import ClassVar, Literal

import lightning as L
import torch
from torch import Tensor
from torchmetrics import MeanMetric, Metric

from .. import __version__
from ..models import Encoder

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

    Optimiser arguments (every subclass takes them as keywords, `**optimization`;
    `configs/optimizer/*.yaml` sets them; those not given take the class's `optimization`):
        optimizer: "sgd", "adam" or "adamw".
        lr, weight_decay, momentum (SGD only).
        lr_decay: multiply the learning rate by this when `val/loss` stops improving
            (`ReduceLROnPlateau`); 1.0 switches the schedule off.
        lr_patience: validation epochs without improvement before a decay.
        lr_milestones: epochs at whose start the learning rate is multiplied by `lr_decay`
            (`MultiStepLR`, Zaremba et al. 2014's schedule), instead of on a plateau:
            a run with a fixed time budget anneals when it still has epochs left.

    Training loss: `train/loss` is its mean over the epoch, weighted as the loss is (words,
    messages, tokens), logged at the epoch's end; `train/loss_step` is the batch's loss, on
    the progress bar and in metrics.csv every `log_every_n_steps`.
    """

    def __init__(self) -> None:
        super().__init__()
        self.train_loss = MeanMetric()  # exact over the epoch, not sampled every N steps

    def log_train_loss(self, loss: Tensor, weight: int) -> None:
        """In `training_step`: `loss` is the mean over `weight` words, messages or tokens."""
        self.log("train/loss_step", loss, prog_bar=True)
        self.train_loss.update(loss.detach(), weight)

    def on_train_epoch_end(self) -> None:
        self.log("train/loss", self.train_loss.compute())
        self.train_loss.reset()

    def mean_over_processes(self, loss: Tensor, n: Tensor | float) -> Tensor:
        """`loss`, the mean over this process's `n` words or messages, scaled so that DDP's
        average of the processes' gradients is the gradient of the mean over all of their
        words: the processes' parts of a batch hold different numbers of words, so the
        plain average of their means would weight a short sentence's words more."""
        trainer = self._trainer
        if trainer is None or trainer.world_size == 1:
            return loss
        n = torch.as_tensor(n, dtype=loss.dtype, device=loss.device).detach()
        total = trainer.strategy.reduce(n.clone(), reduce_op="sum")
        return loss * (trainer.world_size * n / total)

    task_name: ClassVar[str]
    # The optimiser settings a task takes when not given (configs/optimizer/adam.yaml's).
    optimization: ClassVar[dict] = {
        "optimizer": "adam",
        "lr": 2e-3,
        "weight_decay": 0.0,
        "momentum": 0.0,
        "lr_decay": 0.5,
        "lr_patience": 1,
        "lr_milestones": None,
    }

    def _check_optimizer(self) -> None:
        """After `save_hyperparameters`: the optimiser settings a subclass took through
        `**optimization` are known ones, and the missing take their defaults (saved too)."""
        hp = self.hparams
        named = inspect.signature(type(self).__init__).parameters
        unknown = sorted(k for k in hp if k not in named and k not in self.optimization)
        if unknown:
            raise TypeError(
                f"{type(self).__name__} got unexpected arguments {unknown}; its optimiser "
                f"settings are {sorted(self.optimization)}"
            )
        for key, value in self.optimization.items():
            hp.setdefault(key, value)
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
        """The trained parameters, those an encoder keeps from weight decay in a group of
        their own (`Encoder.no_decay_parameters`)."""
        no_decay = {
            id(p) for m in self.modules() if isinstance(m, Encoder) for p in m.no_decay_parameters()
        }
        params = [p for p in self.parameters() if p.requires_grad]
        groups = [
            {"params": [p for p in params if id(p) not in no_decay]},
            {"params": [p for p in params if id(p) in no_decay], "weight_decay": 0.0},
        ]
        return [g for g in groups if g["params"]]

    def on_save_checkpoint(self, checkpoint: dict) -> None:
        # Lets `load_task(path)` pick the right class without the run's config.
        checkpoint["rnn_tasks"] = {"task": self.task_name, "version": __version__}

    def _train_metrics(self) -> dict[str, Metric]:
        return {
            name: m
            for name, m in self.named_modules()
            if isinstance(m, Metric) and any(p.startswith("train") for p in name.split("."))
        }

    def train_epoch_state(self) -> dict:
        """What the training epoch so far has accumulated (its metrics' sums), for a
        checkpoint written mid-epoch: `load_train_epoch_state` continues from it."""
        return {
            name: {**m.metric_state, "_update_count": m._update_count}
            for name, m in self._train_metrics().items()
        }

    def load_train_epoch_state(self, state: dict) -> None:
        for name, metric in self._train_metrics().items():
            saved = dict(state[name])
            metric._update_count = saved.pop("_update_count")
            metric._computed = None
            for key, value in saved.items():
                setattr(metric, key, value.to(self.device) if torch.is_tensor(value) else value)

    @property
    def num_parameters(self) -> int:
        return sum(p.numel() for p in self.parameters() if p.requires_grad)
