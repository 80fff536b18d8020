"""`train(cfg) -> metrics`: the whole run behind `scripts/train.py`, callable from tests and
notebooks with a composed Hydra config.

Sizes the data decides (vocabulary, tag set, label set) are never in the YAML: the
DataModule reports them after `setup()` and they are passed to the task here.
"""

from __future__ import annotations

import contextlib
import json
import logging
import math
import os
import platform
import subprocess
import time
from pathlib import Path

import lightning as L
import torch
from hydra.utils import instantiate
from lightning.pytorch.callbacks import EarlyStopping, LearningRateMonitor
from omegaconf import DictConfig, OmegaConf

from .callbacks import EpochProfile, RunCheckpoint, TriggeredAverage, WeightAverage
from .config_checks import validate_train_config
from .figures import write_figures
from .guards import (
    FiniteGuard,
    RunInterrupted,
    RunLock,
    RunStopped,
    SafeCheckpointIO,
    SignalStop,
    check_writable,
)
from .loggers import check_logger_available
from .nn.graphs import cuda_graphs
from .nn.matmul import matmul_backend
from .resume import (
    ExactResume,
    LastCheckpoint,
    carried_metrics,
    keep_matmul_backend,
    prepend_metrics,
)
from .runtime import set_up_process
from .settings import changes, fixed_data_changes
from .tasks.loading import read_checkpoint

log = logging.getLogger(__name__)


def git_revision() -> str | None:
    try:
        out = subprocess.run(
            ["git", "rev-parse", "--short", "HEAD"],
            capture_output=True,
            text=True,
            cwd=Path(__file__).parent,
            timeout=5,
        )
        return out.stdout.strip() or None
    except (OSError, subprocess.SubprocessError):
        return None


def describe_device(trainer: L.Trainer) -> str:
    """What the run trained on, for results files: the GPU's name or the CPU threads."""
    root = trainer.strategy.root_device
    if root.type == "cuda":
        return f"{torch.cuda.get_device_name(root)} (x{trainer.num_devices})"
    return f"{platform.machine()} CPU, {torch.get_num_threads()} thread(s)"


def data_metadata(hparams: dict) -> dict:
    """The data metadata (vocabularies, tags, labels) in a task's hyperparameters."""
    return {k: hparams[k] for k in ("vocab", "tags", "chars", "labels") if k in hparams}


def checkpoint_metadata(ckpt_path: str | Path) -> dict:
    """The data metadata (vocabularies, tags, labels) a checkpoint was trained with."""
    return data_metadata(read_checkpoint(ckpt_path)["hyper_parameters"])


def check_resumed_data(ckpt_path: str | Path, hparams: dict, data: dict) -> None:
    """Raises if `data` (the run's resolved data config) splits or looks words up unlike
    the data config in the checkpoint's `hparams`: a new split would train on the old
    one's test examples."""
    differ = fixed_data_changes(hparams.get("data") or {}, data, resume=True)
    if differ:
        raise ValueError(
            f"{ckpt_path} was trained with {', '.join(differ)}: a resumed run keeps its data "
            f"(another split would train on the first one's test data, another word lookup "
            f"would change what its embeddings stand for). Resume with the checkpoint's "
            f"settings (override them back), or start a new run without ckpt_path"
        )


def check_no_earlier_run(output_dir: Path) -> None:
    """Raises if a new run would train into a folder that holds another run's checkpoints:
    Lightning would keep them and name the new best `best-v1.ckpt`, so the folder's
    `best.ckpt` would still be the old run's."""
    folder = output_dir / "checkpoints"
    earlier = sorted(p.name for p in folder.glob("*.ckpt"))
    if earlier:
        resume = (
            f"resume that run with ckpt_path={folder / 'last.ckpt'}"
            if (folder / "last.ckpt").is_file()
            else "move them away"
        )
        raise ValueError(
            f"{folder} holds another run's checkpoints ({', '.join(earlier)}): {resume}, or "
            f"train into a new folder (Hydra makes one for every run unless hydra.run.dir "
            f"names one)"
        )


def check_resumed_model(ckpt_path: str | Path, checkpoint: dict, task, model: dict) -> None:
    """Raises if `task`'s weights do not fit the checkpoint's, naming the `model` settings
    (this run's) that differ from the checkpoint's, instead of torch's size mismatch."""
    theirs, ours = checkpoint["state_dict"], task.state_dict()
    misfits = sorted(
        k for k in theirs.keys() | ours.keys() if k not in theirs or k not in ours
        or theirs[k].shape != ours[k].shape
    )  # fmt: skip
    if misfits:
        trained = checkpoint["hyper_parameters"].get("model") or {}
        differ = changes(trained, model, sorted(trained.keys() | model.keys()), prefix="model.")
        raise ValueError(
            f"{ckpt_path} holds another model than this run builds "
            f"({', '.join(differ) or 'the data sizes differ'}; {len(misfits)} weights do not "
            f"fit, e.g. {misfits[0]}). Resume with the checkpoint's model settings, or start "
            f"a new run without ckpt_path"
        )


def build_datamodule(cfg: DictConfig, stage: str, metadata: dict | None = None):
    """Instantiate `cfg.data`, adopt a checkpoint's vocabulary if given, and set it up."""
    datamodule = instantiate(cfg.data)
    if metadata:
        datamodule.adopt(metadata)
    datamodule.setup(stage)
    return datamodule


def build_task(cfg: DictConfig, datamodule):
    """`instantiate(cfg.task, _partial_=True)(**sizes)`: the data's metadata completes it."""
    data = OmegaConf.to_container(cfg.data, resolve=True)
    if data.get("path") and Path(data["path"]).exists():
        # The checkpoint keeps it absolute, so evaluate.py finds it from any folder.
        data["path"] = str(Path(data["path"]).resolve())
    partial = instantiate(cfg.task, _partial_=True, _convert_="all")
    return partial(**datamodule.metadata(), data=data)


def build_trainer(cfg: DictConfig, output_dir: Path, started: float) -> L.Trainer:
    check_logger_available(cfg)
    checkpoints = output_dir / "checkpoints"
    last = LastCheckpoint(
        checkpoints / "last.ckpt", cfg.checkpoint_every_steps, cfg.checkpoint_every_minutes
    )
    callbacks = [
        EpochProfile(),
        ExactResume(started),  # before the callbacks that save mid-epoch: it counts batches
        FiniteGuard(cfg.monitor),
        last,
        SignalStop(last.save_now, last.path),
        # best.ckpt by `monitor` (first: it is `trainer.checkpoint_callback`), and last.ckpt
        # at every epoch's end, to resume from. last.ckpt has a callback of its own because
        # Lightning 2.6 writes `save_last=True`'s file only in a step that saves a top-k
        # checkpoint too, which made last.ckpt a copy of the best epoch. It is written once
        # the epoch has ended, validation and the epoch's own logs included.
        RunCheckpoint(
            dirpath=checkpoints, filename="best", monitor=cfg.monitor, mode=cfg.monitor_mode
        ),
        RunCheckpoint(
            dirpath=checkpoints,
            filename="last",
            enable_version_counter=False,
            save_on_train_epoch_end=True,
        ),
    ]
    if cfg.get("ema_decay"):
        callbacks.append(WeightAverage(cfg.ema_decay))
    if cfg.get("nt_asgd"):
        callbacks.append(TriggeredAverage(cfg.nt_asgd, cfg.monitor, cfg.monitor_mode))
    if cfg.early_stopping_patience:
        callbacks.append(
            EarlyStopping(cfg.monitor, patience=cfg.early_stopping_patience, mode=cfg.monitor_mode)
        )
    logger = instantiate(cfg.logger) if cfg.get("logger") else False
    if logger:
        callbacks.append(LearningRateMonitor(logging_interval="epoch"))
    trainer_args = OmegaConf.to_container(cfg.trainer, resolve=True)
    return L.Trainer(
        **trainer_args,
        # The data modules divide the data among processes themselves: Lightning's sampler
        # would shuffle the LM's windows, whose order carries the state.
        use_distributed_sampler=False,
        callbacks=callbacks,
        logger=logger,
        default_root_dir=output_dir,
        plugins=[SafeCheckpointIO()],
    )


def callback(trainer: L.Trainer, kind: type):
    return next(c for c in trainer.callbacks if isinstance(c, kind))


def check_checkpoints_beside(ckpt_path: str | Path) -> None:
    """Raises, before training, if a checkpoint a resume would use (the one given, or the
    best one beside it, which the run tests at its end) is not a plain rnn-tasks
    checkpoint: every one is read with `weights_only=True`."""
    for path in sorted(Path(ckpt_path).parent.glob("*.ckpt")):
        read_checkpoint(path)


def train(cfg: DictConfig, command: str | None = None) -> dict[str, float]:
    """Train, keep the best and the last checkpoint, test the best one, write metrics.json.

    Returns the final metrics (validation of the last epoch and test of the best model).
    `cfg.ckpt_path` resumes an interrupted run from that checkpoint, exactly: it ends as
    the run that was not interrupted would have. With `cfg.results` set, the summary
    (metrics, `command`, wall time, parameters, git revision) is also written to that
    file: the `results/*.json` the README's tables are built from.

    Raises:
        RunStopped: the run stopped early (a signal, a non-finite loss, a failed write);
            metrics.json says so, and the message says what to do.
    """
    start = time.perf_counter()
    validate_train_config(cfg)  # before the data is read and the model built
    revision = git_revision()  # the code this run started from, not HEAD when it ends
    # A resumed run takes its checkpoint's library (keep_matmul_backend): no measuring first.
    resuming_auto = cfg.ckpt_path and cfg.matmul == "auto"
    matmul = None if resuming_auto else cfg.matmul
    set_up_process(cfg.threads, cfg.flush_denormal, matmul, cfg.get("cuda_graphs"))
    output_dir = Path(cfg.output_dir)
    check_writable(output_dir)
    with RunLock(output_dir, command) if first_process() else contextlib.nullcontext():
        return _train(cfg, command, start, revision, output_dir)


def first_process() -> bool:
    """Whether this is the run's first process: DDP's others, on this machine or on others
    sharing the run folder, leave its lock and its records to it. Read from the launcher's
    environment, before the trainer exists: torchrun's `RANK`, SLURM's `SLURM_PROCID`, or
    Lightning's own launcher's `NODE_RANK` and `LOCAL_RANK`."""
    for global_rank in ("RANK", "SLURM_PROCID"):
        if global_rank in os.environ:
            return int(os.environ[global_rank]) == 0
    return int(os.environ.get("NODE_RANK", 0)) == 0 and int(os.environ.get("LOCAL_RANK", 0)) == 0


def record_run_config(cfg: DictConfig, output_dir: Path) -> None:
    """`.hydra/config.yaml`, `hydra.yaml` and `overrides.yaml`, as Hydra writes them, but
    written here, once the run holds its folder's lock and its checks passed
    (configs/train.yaml turns Hydra's own off): a run refused there must not replace the
    record of the run the folder holds."""
    from hydra.core.hydra_config import HydraConfig

    if not HydraConfig.initialized():
        return  # called from Python, not through scripts/train.py
    hydra_cfg = HydraConfig.get()
    folder = output_dir / ".hydra"
    folder.mkdir(parents=True, exist_ok=True)
    OmegaConf.save(cfg, folder / "config.yaml")
    OmegaConf.save(OmegaConf.create({"hydra": hydra_cfg}), folder / "hydra.yaml")
    OmegaConf.save(hydra_cfg.overrides.task, folder / "overrides.yaml")


def _train(cfg, command, start, revision, output_dir: Path) -> dict[str, float]:
    L.seed_everything(cfg.seed, workers=True)
    metadata = checkpoint = None
    carried: list[dict] = []
    if cfg.ckpt_path:  # read once here; trainer.fit reads it again for the weights
        checkpoint = read_checkpoint(cfg.ckpt_path)
        check_checkpoints_beside(cfg.ckpt_path)
        hparams = checkpoint["hyper_parameters"]
        check_resumed_data(cfg.ckpt_path, hparams, OmegaConf.to_container(cfg.data, resolve=True))
        metadata = data_metadata(hparams)
        carried = carried_metrics(cfg.ckpt_path, checkpoint)
        keep_matmul_backend(cfg.matmul, checkpoint, cfg.ckpt_path)
    else:
        check_no_earlier_run(output_dir)
    if first_process():  # the run is accepted: now its record
        record_run_config(cfg, output_dir)
    datamodule = build_datamodule(cfg, "fit", metadata)
    task = build_task(cfg, datamodule)
    if checkpoint is not None:
        model = OmegaConf.to_container(cfg.task.model, resolve=True)
        check_resumed_model(cfg.ckpt_path, checkpoint, task, model)
        del checkpoint  # its tensors: Lightning loads the file again for the weights
    trainer = build_trainer(cfg, output_dir, start)
    if trainer.world_size > 1:  # each process its own dropout masks; the weights are rank 0's
        L.seed_everything(cfg.seed + trainer.global_rank, workers=True, verbose=False)
    if trainer.is_global_zero:  # the other processes' loggers write nothing
        prepend_metrics(trainer.logger, carried)
    stop, clock = callback(trainer, SignalStop), callback(trainer, ExactResume)
    stop.install()  # from here on, a signal stops the run cleanly
    log.info("%s: %s parameters", type(task).__name__, f"{task.num_parameters:,}")
    try:
        trainer.fit(task, datamodule=datamodule, ckpt_path=cfg.ckpt_path, weights_only=True)
        if stop.received is not None:  # during the last epoch's validation
            raise RunInterrupted(stop.received, stop.last)
        metrics = {k: float(v) for k, v in trainer.callback_metrics.items()}
        fit_seconds = clock.seconds
        if cfg.test:
            best = trainer.checkpoint_callback.best_model_path
            tested = trainer.test(
                task, datamodule=datamodule, ckpt_path=best or None, weights_only=True
            )
            metrics.update({k: float(v) for k, v in tested[0].items()})
    except RunStopped as stopped:
        if not trainer.is_global_zero:  # the first process says why, and how to resume
            stopped.quiet = True
            raise
        if isinstance(stopped, RunInterrupted) and command:
            stopped = stopped.with_command(command, output_dir)  # the command that resumes
        if trainer.is_global_zero:  # one writer of the run's records
            summary = run_summary(cfg, command, trainer, task, revision, clock.seconds, start)
            write_summary({**summary, "status": status_of(stopped), "stopped": str(stopped)},
                          output_dir, None)  # fmt: skip
        raise stopped from None
    finally:
        stop.uninstall()
    if trainer.is_global_zero:  # one writer of the run's records
        summary = run_summary(cfg, command, trainer, task, revision, fit_seconds, start)
        summary["metrics"] = metrics
        write_summary({**summary, "status": "finished"}, output_dir, results_file(cfg))
        write_figures(output_dir, task, datamodule, tested=cfg.test)  # a failure only warns
    return metrics


def status_of(stopped: RunStopped) -> str:
    return "interrupted" if isinstance(stopped, RunInterrupted) else "failed"


def run_summary(cfg, command, trainer, task, revision, fit_seconds, start) -> dict:
    """What metrics.json says of a run, finished or not."""
    profile = callback(trainer, EpochProfile).history
    return {
        "command": command,
        "task": task.task_name,
        "metrics": {k: float(v) for k, v in trainer.callback_metrics.items()},
        "perf": _mean_by_key(profile),
        "parameters": task.num_parameters,
        "train_seconds": round(fit_seconds, 1),
        "total_seconds": round(clock_total(trainer, start), 1),
        "epochs": trainer.current_epoch,
        "best_checkpoint": getattr(trainer.checkpoint_callback, "best_model_path", None),
        "git_revision": revision,
        "device": describe_device(trainer),
        "processes": trainer.world_size,
        "matmul": matmul_backend(),
        "cuda_graphs": cuda_graphs() if trainer.strategy.root_device.type == "cuda" else None,
        "config": OmegaConf.to_container(cfg, resolve=True),
    }


def _mean_by_key(rows: list[dict[str, float]]) -> dict[str, float]:
    """Each key's mean over the rows that have it (an epoch's profile may lack its shares)."""
    keys = dict.fromkeys(k for row in rows for k in row)
    return {k: sum(r[k] for r in rows if k in r) / sum(k in r for r in rows) for k in keys}


def clock_total(trainer: L.Trainer, start: float) -> float:
    """The run's whole time, a resumed run's time before the resume included."""
    return callback(trainer, ExactResume).seconds_before + time.perf_counter() - start


def results_file(cfg: DictConfig) -> str | None:
    """`cfg.results`, unless the run saw only part of its data: a check of a config must
    not overwrite the results file of the experiment it checks."""
    partial = partial_data(cfg.trainer)
    if partial and cfg.results:
        log.warning("%s not written: %s (metrics.json has the figures)", cfg.results, partial)
    return None if partial else cfg.results


def partial_data(trainer: DictConfig) -> str | None:
    """Why a run saw only part of its data (`fast_dev_run`, `overfit_batches`,
    `limit_*_batches`), or None."""
    for key in ("fast_dev_run", "overfit_batches"):
        if trainer.get(key):
            return f"trainer.{key}={trainer[key]}"
    for key in ("limit_train_batches", "limit_val_batches", "limit_test_batches"):
        value = trainer.get(key)  # a float is a share of the batches, an int a count
        if value is not None and not (isinstance(value, float) and value == 1.0):
            return f"trainer.{key}={value} runs on part of the data"
    return None


def strict_json(value):
    """`value` with every NaN and infinity as None: JSON has no such numbers, and strict
    parsers reject the `NaN` that `json.dumps` writes by default."""
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if isinstance(value, dict):
        return {k: strict_json(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [strict_json(v) for v in value]
    return value


def write_summary(summary: dict, output_dir: Path, results: str | None) -> None:
    """The run's summary as `output_dir/metrics.json`, and as `results` when given, in
    strict JSON."""
    text = json.dumps(strict_json(summary), indent=2, allow_nan=False) + "\n"
    (output_dir / "metrics.json").write_text(text)
    log.info("metrics written to %s", output_dir / "metrics.json")
    if results:
        Path(results).parent.mkdir(parents=True, exist_ok=True)
        Path(results).write_text(text)
        log.info("results written to %s", results)
