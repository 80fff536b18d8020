"""Training callbacks: where an epoch's time goes (`EpochProfile`), averages of the weights
(`WeightAverage`, exponential; `TriggeredAverage`, NT-ASGD's uniform one), and checkpoints
that survive a resume into a new run folder (`RunCheckpoint`)."""

from __future__ import annotations

import logging
import shutil
import time
from pathlib import Path

import lightning as L
import torch
from lightning.pytorch.callbacks import EMAWeightAveraging, ModelCheckpoint, WeightAveraging
from lightning.pytorch.trainer.states import TrainerFn

log = logging.getLogger(__name__)


def count_tokens(batch: dict) -> int:
    """Real (unpadded) tokens a batch trains on: LM windows or padded sentences."""
    if "target" in batch:
        return batch["target"].numel()
    return int(batch["lengths"].sum())


class EpochProfile(L.Callback):
    """Times every training step in three parts and logs, once per epoch:

    - `perf/tokens_per_s`: real tokens trained on per second of training wall time (by
      all processes together, under data-parallel training);
    - `perf/outside_share`: the share of that time spent outside forward and backward
      (data loading and collation, the optimiser step, logging, Python between steps);
    - `perf/optimizer_share`: the optimiser step's part of it.

    Validation is not counted: a validation run between two training steps is taken off
    the epoch's time, and the one after its last step falls outside it anyway.

    On a GPU the work is asynchronous, so timing a part means waiting for the GPU first:
    done at every step, that would keep the CPU from queueing the next step's work while
    the GPU runs this one. There, the parts are timed on every `CUDA_SAMPLE`-th step only
    (not the first ones, which compile kernels and record CUDA graphs), and the shares are
    those of the timed steps' time, each from the end of the step before it (a timed step
    starts on an idle GPU, so its shares are those of a step whose CPU and GPU work do not
    overlap); an epoch of fewer steps reports tokens/s alone.
    """

    CUDA_SAMPLE = 20

    def __init__(self) -> None:
        self.history: list[dict[str, float]] = []

    # The history travels in checkpoints, so a resumed run's figures cover the whole run.
    def on_save_checkpoint(self, trainer, pl_module, checkpoint: dict) -> None:
        checkpoint["epoch_profile"] = self.history

    def on_load_checkpoint(self, trainer, pl_module, checkpoint: dict) -> None:
        if trainer.state.fn == TrainerFn.FITTING:  # not when a checkpoint is tested
            self.history = list(checkpoint.get("epoch_profile", []))

    def _now(self, trainer: L.Trainer, timed: bool = True) -> float:
        if timed and trainer.strategy.root_device.type == "cuda":
            torch.cuda.synchronize()  # GPU work is asynchronous: wait to time it
        return time.perf_counter()

    def on_train_start(self, trainer, pl_module) -> None:
        self.on_train_epoch_start(trainer, pl_module)  # a run resumed mid-epoch starts there

    def on_train_epoch_start(self, trainer, pl_module) -> None:
        self.tokens = self.steps = self.timed_steps = 0
        self.forward = self.backward = self.optimizer = self.validation = self.timed_s = 0.0
        self.pending_validation = 0.0
        self.epoch_start = self.last_end = self._now(trainer)

    def _timed(self, trainer: L.Trainer, step: int) -> bool:
        on_gpu = trainer.strategy.root_device.type == "cuda"
        return not on_gpu or step % self.CUDA_SAMPLE == self.CUDA_SAMPLE - 1

    def on_train_batch_start(self, trainer, pl_module, batch, batch_idx) -> None:
        self.timed = self._timed(trainer, self.steps)
        self.steps += 1
        self.timed_steps += self.timed
        self.step_start = self._now(trainer, self.timed)
        # a timed step's span starts where the step before it ended (the wait for the data
        # included), validation in between taken off
        self.span_start = self.last_end + self.pending_validation
        self.validation += self.pending_validation  # it ran between two training steps
        self.pending_validation = 0.0
        self.tokens += count_tokens(batch)

    def on_before_backward(self, trainer, pl_module, loss) -> None:
        self.backward_start = self._now(trainer, self.timed)
        if self.timed:
            self.forward += self.backward_start - self.step_start

    def on_after_backward(self, trainer, pl_module) -> None:
        self.backward_end = self._now(trainer, self.timed)
        if self.timed:
            self.backward += self.backward_end - self.backward_start

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx) -> None:
        next_timed = self._timed(trainer, self.steps)  # its span starts here
        self.last_end = self._now(trainer, self.timed or next_timed)
        if self.timed:
            self.optimizer += self.last_end - self.backward_end
            self.timed_s += self.last_end - self.span_start

    def on_validation_epoch_start(self, trainer, pl_module) -> None:
        self.validation_start = self._now(trainer)

    def on_validation_epoch_end(self, trainer, pl_module) -> None:
        if not trainer.sanity_checking and hasattr(self, "epoch_start"):
            self.pending_validation += self._now(trainer) - self.validation_start

    def on_train_epoch_end(self, trainer, pl_module) -> None:
        total = self.last_end - self.epoch_start - self.validation
        tokens = self.tokens
        if trainer.world_size > 1:  # the run's throughput: every process's tokens
            # On the process's device: nccl reduces GPU tensors only.
            count = torch.tensor(float(tokens), device=pl_module.device)
            tokens = int(trainer.strategy.reduce(count, reduce_op="sum"))
        if total <= 0 or not tokens:
            return
        stats = {"tokens_per_s": tokens / total, "epoch_train_s": total}
        # Shares of the epoch where every step was timed (the time between steps included),
        # else of the timed steps.
        span = total if self.timed_steps == self.steps else self.timed_s
        if self.timed_steps and span > 0:
            stats["outside_share"] = 1 - (self.forward + self.backward) / span
            stats["optimizer_share"] = self.optimizer / span
        self.history.append(stats)
        pl_module.log_dict({f"perf/{k}": v for k, v in stats.items()})


class WeightAverage(EMAWeightAveraging):
    """An exponential moving average of the weights, `avg = decay * avg + (1 - decay) * w`
    after every optimiser step (Polyak averaging): validation, the checkpoints'
    ``state_dict`` and so testing and inference use the average, which is steadier than
    the last step's weights. Checkpoints also keep the raw weights, to resume from.

    Lightning's callback, with one change: when a checkpoint is loaded to test or predict,
    its averaged ``state_dict`` is what runs. (The parent puts the raw weights back
    whenever it has an average, so `trainer.test(ckpt_path="best")` after `fit` tested
    the raw weights.)
    """

    def __init__(self, decay: float) -> None:
        if not 0.0 < decay < 1.0:
            raise ValueError(f"the weight-average decay must be in (0, 1), got {decay}")
        super().__init__(decay=decay)

    def on_load_checkpoint(self, trainer, pl_module, checkpoint) -> None:
        if trainer.state.fn == TrainerFn.FITTING:
            super().on_load_checkpoint(trainer, pl_module, checkpoint)


class TriggeredAverage(WeightAveraging):
    """The uniform average of the weights of every optimiser step since a trigger, which
    fires when `monitor` stops improving: non-monotonically triggered averaging (NT-ASGD,
    Merity et al. 2017; with `task.optimizer=sgd` it is their optimiser).

    After each validation the monitored figure is compared with the best of those more
    than `nonmono` validations back (lowest, or highest with `mode="max"`); once it is
    worse, averaging starts from the current weights, and from then on validation,
    checkpoints (`state_dict`), the test and inference use the average (the raw weights
    are kept too, to resume from). Before the trigger nothing changes. It fires once.
    """

    def __init__(self, nonmono: int, monitor: str = "val/loss", mode: str = "min") -> None:
        if isinstance(nonmono, bool) or not isinstance(nonmono, int) or nonmono < 1:
            raise ValueError(f"nonmono must be a whole number of validations >= 1, got {nonmono}")
        if mode not in ("min", "max"):
            raise ValueError(f"mode must be 'min' or 'max', got {mode!r}")
        super().__init__()  # AveragedModel's default: the uniform mean
        self.nonmono, self.monitor, self.sign = nonmono, monitor, 1.0 if mode == "min" else -1.0
        self.history: list[float] = []  # each validation's figure so far, signed: lower is better
        self.started_at: int | None = None  # the optimiser step averaging started after

    @property
    def averaging(self) -> bool:
        return self._average_model is not None and self.started_at is not None

    def should_update(self, step_idx: int | None = None, epoch_idx: int | None = None) -> bool:
        return step_idx is not None and self.started_at is not None

    def on_validation_epoch_start(self, trainer, pl_module) -> None:
        if self.averaging:
            self._swap_models(pl_module)

    def on_validation_epoch_end(self, trainer, pl_module) -> None:
        if self.averaging:
            self._swap_models(pl_module)

    def on_validation_end(self, trainer, pl_module) -> None:
        # After the module has logged the epoch's loss, before the checkpoints are written.
        if trainer.sanity_checking or self.started_at is not None or self._average_model is None:
            return
        loss = trainer.callback_metrics.get(self.monitor)
        if loss is None:
            return
        loss = self.sign * float(loss)  # lower is better
        if len(self.history) > self.nonmono and loss > min(self.history[: -self.nonmono]):
            self.started_at = trainer.global_step
            self._average_model.update_parameters(pl_module)  # the average starts here
            self._latest_update_step = trainer.global_step
            log.info(
                "%s %.4f is worse than the best of the validations before the last %d: "
                "averaging the weights from step %d on (NT-ASGD)",
                self.monitor, self.sign * loss, self.nonmono, self.started_at,
            )  # fmt: skip
        self.history.append(loss)

    def on_train_end(self, trainer, pl_module) -> None:
        if self.averaging:
            self._copy_average_to_current(pl_module)

    def state_dict(self) -> dict:
        return {**super().state_dict(), "history": self.history, "started_at": self.started_at}

    def load_state_dict(self, state_dict: dict) -> None:
        super().load_state_dict(state_dict)
        self.history, self.started_at = list(state_dict["history"]), state_dict["started_at"]

    def on_save_checkpoint(self, trainer, pl_module, checkpoint: dict) -> None:
        if self.averaging:
            super().on_save_checkpoint(trainer, pl_module, checkpoint)

    def on_load_checkpoint(self, trainer, pl_module, checkpoint: dict) -> None:
        # Testing or predicting a checkpoint runs its state_dict: the average once started.
        if trainer.state.fn == TrainerFn.FITTING and "averaging_state" in checkpoint:
            super().on_load_checkpoint(trainer, pl_module, checkpoint)


class RunCheckpoint(ModelCheckpoint):
    """Lightning's `ModelCheckpoint`, which also keeps its record when a run resumes from a
    checkpoint written in another folder.

    Lightning restores the best score only when the checkpoint folder is unchanged. A run
    resumed with ``ckpt_path=<old run>/checkpoints/last.ckpt`` gets a new Hydra folder, so
    the first epoch after the resume became ``best.ckpt`` however bad it was, and was the
    one tested. Here the old run's checkpoint files are copied into the new folder and
    the record (best score, paths) carries on there, so the new folder is a whole run.

    Only a resumed fit reads the record back: Lightning also loads it when it tests a
    checkpoint, which would put an older record (and older files) back after training.
    The old files are looked for beside the checkpoint resumed from, since a run folder
    may have been moved or copied since it recorded them, then where it recorded them;
    where they are gone, the record starts afresh, as Lightning's would. Under DDP
    the first process decides and copies, so every process keeps the same record even
    where they do not share a filesystem.
    """

    _stage: str | None = None
    _trainer: L.Trainer | None = None

    def setup(self, trainer: L.Trainer, pl_module: L.LightningModule, stage: str) -> None:
        super().setup(trainer, pl_module, stage)
        self._stage, self._trainer = stage, trainer

    def _old_folder(self, recorded: str, names: list[str]) -> Path | None:
        """Where the resumed run's files `names` are now: beside the checkpoint resumed
        from (the run folder may have been moved or copied), else in the folder it
        recorded (a `last.ckpt` taken out alone); None where they are gone."""
        resumed = self._trainer.ckpt_path if self._trainer is not None else None
        places = ([Path(resumed).parent] if resumed else []) + [Path(recorded)]
        return next((p for p in places if all((p / name).is_file() for name in names)), None)

    def load_state_dict(self, state_dict: dict) -> None:
        if self._stage != "fit":
            return
        recorded = state_dict.get("dirpath")
        if not recorded or not self.dirpath or Path(recorded) == Path(self.dirpath):
            super().load_state_dict(state_dict)
            return
        best = [state_dict.get("best_model_path"), *state_dict.get("best_k_models", {})]
        old_dir = self._old_folder(recorded, [Path(p).name for p in best if p])
        found, trainer = old_dir is not None, self._trainer
        if trainer is not None:  # every process calls this, so it may broadcast
            found = trainer.strategy.broadcast(found, src=0)
        if not found:
            if self.monitor:
                log.warning(
                    "resuming in %s: the resumed run's checkpoints in %s are gone, so its "
                    "best score is not carried over",
                    self.dirpath,
                    recorded,
                )
            return
        old_dir = old_dir or Path(recorded)  # where this process sees none, it copies none
        new_dir = Path(self.dirpath)
        copies = trainer is None or trainer.is_global_zero
        copied: set[str] = set()  # the record names the best file up to three times

        def moved(path: str) -> str:
            if not path:
                return path
            name = Path(path).name
            source, target = old_dir / name, new_dir / name
            if copies and name not in copied and source.is_file():
                if source.resolve() != target.resolve():
                    new_dir.mkdir(parents=True, exist_ok=True)
                    shutil.copy2(source, target)
                copied.add(name)
            return str(target)

        state = {
            **state_dict,
            "dirpath": self.dirpath,
            "best_model_path": moved(state_dict.get("best_model_path", "")),
            "kth_best_model_path": moved(state_dict.get("kth_best_model_path", "")),
            "last_model_path": moved(state_dict.get("last_model_path", "")),
            "best_k_models": {moved(p): v for p, v in state_dict.get("best_k_models", {}).items()},
        }
        if self.monitor and state["best_model_path"]:
            log.info(
                "resuming: %s (%s %.4f) carried over from %s",
                Path(state["best_model_path"]).name,
                self.monitor,
                float(state_dict["best_model_score"]),
                old_dir,
            )
        super().load_state_dict(state)
