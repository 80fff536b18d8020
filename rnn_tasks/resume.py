"""Exact resume: a run killed at any point and resumed from its `last.ckpt` ends with the
weights and metrics of the run that was never stopped.

Lightning's checkpoint holds the weights, the optimiser, the schedulers, the loop counters
and the callbacks' records. What else decides the rest of a run is kept here:

- the random number generators (torch, CUDA, numpy, python): dropout's masks;
- where the training order stood (`rnn_tasks.data.order.TrainOrder`);
- for a checkpoint written mid-epoch (`LastCheckpoint`), what the epoch so far has
  accumulated: its metrics' sums and the LM's carried state (`RecurrentTask.train_epoch_state`),
  and the last logged metrics that a plateau schedule will read at the epoch's end;
- the training time already spent, so `train_seconds` counts the whole run;
- the rows of `metrics.csv` up to the checkpoint (`carried_metrics`).

Under data-parallel training the generators, the epoch's sums and the carried state are
each process's own (its rows of the batch): every process's are gathered into the
checkpoint, and each takes its own back on resume.
"""

from __future__ import annotations

import csv
import logging
import random
import time
from pathlib import Path

import lightning as L
import numpy as np
import torch
from lightning.pytorch.trainer.states import TrainerFn

from .nn.matmul import matmul_backend, set_matmul_backend

log = logging.getLogger(__name__)

KEY = "exact_resume"  # its entry in a checkpoint


def rng_states() -> dict:
    """Every generator's state, as types `torch.load(weights_only=True)` reads."""
    kind, keys, pos, has_gauss, gauss = np.random.get_state()
    version, mt, python_gauss = random.getstate()
    states = {
        "torch": torch.get_rng_state(),
        "numpy": [kind, torch.from_numpy(keys.astype(np.int64)), pos, has_gauss, gauss],
        "python": [version, list(mt), python_gauss],
    }
    if torch.cuda.is_available() and torch.cuda.is_initialized():
        states["cuda"] = torch.cuda.get_rng_state_all()
    return states


def _gather(own: dict, world_size: int) -> list[dict]:
    """Every process's `own`, in rank order (a collective: all processes call it)."""
    gathered: list = [None] * world_size
    torch.distributed.all_gather_object(gathered, own)
    return gathered


def set_rng_states(states: dict) -> None:
    torch.set_rng_state(states["torch"])
    kind, keys, pos, has_gauss, gauss = states["numpy"]
    np.random.set_state((kind, keys.numpy().astype(np.uint32), pos, has_gauss, gauss))
    version, mt, gauss = states["python"]
    random.setstate((version, tuple(mt), gauss))
    if "cuda" in states and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(states["cuda"])


class ExactResume(L.Callback):
    """Saves, with every checkpoint, what Lightning does not (see the module's docstring),
    and puts it back when a fit resumes.

    When it is put back matters: a checkpoint written at an epoch's end restores the
    generators as it loads, before the next epoch's loader is made (making one draws
    from them, as it did in the run that went on); one written mid-epoch restores them
    at the first batch it trains, after the loader of the resumed epoch was made again.

    Args:
        started: `time.perf_counter()` when the run started, for `seconds`.
    """

    def __init__(self, started: float) -> None:
        self.started = started
        self.seconds_before = 0.0  # training time of the run before it was resumed
        self.batches_done = 0  # in this epoch
        self._pending: dict | None = None  # a mid-epoch state, until its first batch

    @property
    def seconds(self) -> float:
        """The run's time so far, the time before any resume included."""
        return self.seconds_before + time.perf_counter() - self.started

    def on_train_epoch_start(self, trainer, pl_module) -> None:
        self.batches_done = 0

    def on_train_batch_start(self, trainer, pl_module, batch, batch_idx) -> None:
        if self._pending is not None:
            state, self._pending = self._pending, None
            self.batches_done = state["batches_done"]
            pl_module.load_train_epoch_state(state["epoch_state"])
            set_rng_states(state["rng"])
            trainer.callback_metrics.update(state.get("callback_metrics", {}))
            # Lightning skips the plateau schedule's step at the end of an epoch it resumed
            # mid-way ("restarting"), as it cannot know the metric; it is restored above.
            trainer.fit_loop._restarting = False

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx) -> None:
        self.batches_done += 1

    def mid_epoch(self, trainer: L.Trainer) -> bool:
        return 0 < self.batches_done < trainer.num_training_batches

    def on_save_checkpoint(self, trainer, pl_module, checkpoint: dict) -> None:
        mid = self.mid_epoch(trainer)
        done = self.batches_done if mid else 0
        own = {"rng": rng_states(), "epoch_state": pl_module.train_epoch_state() if mid else None}
        if trainer.world_size > 1:  # every process's, in rank order
            own = {"processes": _gather(own, trainer.world_size)}
        checkpoint[KEY] = {
            **own,
            "order": trainer.datamodule.train_order_state(done),
            "batches_done": done,
            "callback_metrics": dict(trainer.callback_metrics) if mid else {},
            "seconds": self.seconds,
            "matmul": matmul_backend(),
        }

    def on_load_checkpoint(self, trainer, pl_module, checkpoint: dict) -> None:
        state = checkpoint.get(KEY)
        if trainer.state.fn != TrainerFn.FITTING or state is None:
            return  # testing a checkpoint; or one written before exact resume
        processes = state.get("processes", [state])
        if len(processes) != trainer.world_size:
            raise ValueError(
                f"{trainer.ckpt_path} was written by {len(processes)} training process(es); "
                f"it resumes exactly on as many, not {trainer.world_size} (trainer.devices x "
                f"trainer.num_nodes)"
            )
        state = {**state, **processes[trainer.global_rank]}
        self.seconds_before = state["seconds"]
        trainer.datamodule.resume_train_order(state["order"])
        if state["batches_done"]:
            self._pending = state
        else:
            set_rng_states(state["rng"])


def keep_matmul_backend(choice: str, checkpoint: dict, ckpt_path) -> None:
    """A resumed run computes its products with the library the run it continues used
    (the two differ in float32 rounding), unless `choice` names another explicitly."""
    recorded = (checkpoint.get(KEY) or {}).get("matmul")
    if recorded is None or recorded == choice:
        return
    if choice == "auto":
        set_matmul_backend(recorded)
        log.info("matmul backend: %s, as in %s", recorded, ckpt_path)
    else:
        log.warning(
            "%s was trained with matmul=%s; resuming with matmul=%s gives results that differ "
            "from the uninterrupted run's in float32 rounding",
            ckpt_path,
            recorded,
            choice,
        )


def carried_metrics(ckpt_path: str | Path, checkpoint: dict) -> list[dict]:
    """The rows of `metrics.csv` that the run resumed from had logged when it wrote
    `ckpt_path` (its run folder's file, rows up to the epoch and step of `checkpoint`, the
    file's contents), so the resumed run's file holds the whole run. Empty where there is
    no such file."""
    metrics = Path(ckpt_path).parent.parent / "metrics.csv"
    if not metrics.is_file():
        return []
    epoch, step = checkpoint["epoch"], checkpoint["global_step"]
    with open(metrics, newline="") as f:
        rows = list(csv.DictReader(f))

    def before(row: dict) -> bool:
        return int(row.get("epoch") or 0) <= epoch and int(row["step"]) < step

    return [{k: v for k, v in row.items() if v != ""} for row in rows if before(row)]


def prepend_metrics(logger, rows: list[dict]) -> None:
    """Puts `rows` first in a `CSVLogger`'s file (the resumed run's own rows follow)."""
    if not rows or not hasattr(logger, "experiment"):
        return
    writer = logger.experiment  # made now: an in-place resume's old file is already read
    writer.metrics[:0] = [
        {k: (float(v) if k not in ("step", "epoch") else int(float(v))) for k, v in r.items()}
        for r in rows
    ]
    log.info("resuming: %d rows of metrics.csv carried over", len(rows))


class LastCheckpoint(L.Callback):
    """`last.ckpt` also in the middle of an epoch, every `every_steps` training steps or
    `every_minutes` minutes, whichever comes first (None: never), so a kill loses little
    of a long epoch. `ExactResume` makes a resume from it exact.

    It is not written after a batch that validation follows (an epoch's last one, with
    the epoch-end `last.ckpt` a moment later): resuming there would validate again.
    """

    def __init__(
        self, path: Path, every_steps: int | None = None, every_minutes: float | None = None
    ) -> None:
        for name, value in (("every_steps", every_steps), ("every_minutes", every_minutes)):
            if value is not None and (isinstance(value, bool) or not value > 0):
                raise ValueError(f"checkpoint {name} must be > 0 or null, got {value!r}")
        self.path = Path(path)
        self.every_steps = every_steps
        self.every_minutes = every_minutes
        self._saved_at = time.perf_counter()

    def on_train_start(self, trainer, pl_module) -> None:
        self._saved_at = time.perf_counter()

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx) -> None:
        by_steps = self.every_steps and trainer.global_step % self.every_steps == 0
        by_time = (
            self.every_minutes and time.perf_counter() - self._saved_at >= 60 * self.every_minutes
        )
        if trainer.world_size > 1:  # every process saves together, on the first's clock
            by_time = trainer.strategy.broadcast(by_time, src=0)
        if by_steps or by_time:
            self.save_now(trainer, batch_idx)

    def save_now(self, trainer: L.Trainer, batch_idx: int) -> Path | None:
        """Writes `last.ckpt` now, after batch `batch_idx`; None where validation comes
        next (see the class's docstring)."""
        done = batch_idx + 1
        if done >= trainer.num_training_batches or done % trainer.val_check_batch == 0:
            return None
        trainer.save_checkpoint(self.path, weights_only=False)  # the whole state, to resume
        self._saved_at = time.perf_counter()
        return self.path
