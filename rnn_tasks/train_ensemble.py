"""`train_ensemble(cfg) -> metrics`: `cfg.ensemble_size` models that differ only in their
seed, trained one after another on one data split, then validated and tested as the
average of their probabilities (`rnn_tasks.tasks.ensemble`)."""

from __future__ import annotations

import json
import logging
import statistics
import time
from pathlib import Path

from hydra.utils import get_class, instantiate
from omegaconf import DictConfig, OmegaConf, open_dict

from .errors import ConfigError
from .evaluate import load_checkpoints, run_split
from .guards import RunLock
from .settings import changes, flatten, with_legacy_defaults
from .tasks.encoder_tasks import EncoderTask
from .train import (
    data_metadata,
    git_revision,
    record_run_config,
    results_file,
    train,
    write_summary,
)

log = logging.getLogger(__name__)


def member_config(cfg: DictConfig, seed: int) -> DictConfig:
    """`cfg` for the member with this seed: its own folder, the ensemble's data split."""
    member = cfg.copy()
    with open_dict(member):
        member.data = cfg.data.copy()
        member.data.seed = cfg.data.seed  # resolved now: every member sees the same split
        member.seed = seed
        member.output_dir = str(Path(cfg.output_dir) / f"seed{seed}")
        member.results = None
        member.ensemble_size = 1
    return member


# What a rerun may change for a finished member: where things go and how the run is shown.
# Anything else (the model, the task, the data's split, epochs, monitor, clipping, ...)
# would mix members trained two ways in one ensemble.
FREE_SETTINGS = ("output_dir", "results", "run_name", "ckpt_path", "ensemble_size", "test",
                 "threads", "logger", "flush_denormal", "trainer.accelerator",
                 "trainer.enable_progress_bar", "trainer.log_every_n_steps", "data.path",
                 "data.num_workers", "data.eval_batch_size", "data.test_file")  # fmt: skip


def _free(key: str) -> bool:
    return any(key == free or key.startswith(free + ".") for free in FREE_SETTINGS)


def check_finished_member(folder: Path, trained: dict, member: DictConfig) -> None:
    """Raises if a member found finished in `folder` was trained unlike `member` asks.

    Settings the member's config predates are compared as they were then where that is
    known (`legacy_defaults`), else not at all.
    """
    trained = {**trained, "data": with_legacy_defaults(trained.get("data") or {})}
    old, new = flatten(trained), flatten(OmegaConf.to_container(member, resolve=True))
    differ = changes(old, new, sorted(k for k in old if not _free(k)))
    if differ:
        raise ValueError(
            f"{folder} holds a member trained with {'; '.join(differ)}. An ensemble run again "
            f"in its folder keeps its finished members: run it in a new folder, or delete "
            f"{folder} to train that member again"
        )


def mean_perf(perfs: list[dict]) -> dict:
    """The members' throughput figures averaged; a member resumed after its last epoch
    trained nothing in its final run and has none."""
    timed = [p for p in perfs if p]
    return {k: statistics.mean(p[k] for p in timed) for k in timed[0]} if timed else {}


def train_ensemble(cfg: DictConfig, command: str | None = None) -> dict[str, float]:
    """Trains members with seeds `cfg.seed`, `cfg.seed + 1`, ..., each as `train` does into
    `output_dir/seed<N>/`, then validates and tests their averaged probabilities. Members
    already finished in `output_dir` are kept; one with only `last.ckpt` resumes from it.

    Returns the ensemble's metrics; the summary (`metrics.json` in `output_dir`, and
    `cfg.results`) also holds every member's test metrics and their mean.
    """
    if cfg.ensemble_size < 2:
        raise ValueError(f"ensemble_size must be >= 2 for an ensemble, got {cfg.ensemble_size}")
    if not issubclass(get_class(cfg.task._target_), EncoderTask):
        raise ValueError("ensemble_size applies to task=pos and task=cls, not language models")
    if cfg.ckpt_path:
        raise ValueError(
            "ckpt_path resumes one run; an ensemble resumes when run again in its own "
            "folder: hydra.run.dir=<its output folder> (or output_dir=...)"
        )
    if cfg.trainer.get("devices", 1) != 1 or cfg.trainer.get("num_nodes", 1) != 1:
        raise ConfigError(
            f"trainer.devices={cfg.trainer.get('devices')}, trainer.num_nodes="
            f"{cfg.trainer.get('num_nodes', 1)}: an ensemble trains its members one after "
            "another on one device (trainer.devices=1); a single model (ensemble_size=1) "
            "trains on several processes"
        )
    if cfg.trainer.get("fast_dev_run"):
        raise ValueError(
            "an ensemble tests its members' best checkpoints, and trainer=debug "
            "(fast_dev_run) writes none: try the config with trainer.max_epochs=1 "
            "trainer.limit_train_batches=2 instead"
        )
    with RunLock(Path(cfg.output_dir), command):  # the members lock their own folders too
        record_run_config(cfg, Path(cfg.output_dir))
        return _train_ensemble(cfg, command)


def _train_ensemble(cfg: DictConfig, command: str | None) -> dict[str, float]:
    start = time.perf_counter()
    revision = git_revision()
    members = []
    for i in range(cfg.ensemble_size):
        member = member_config(cfg, cfg.seed + i)
        folder = Path(member.output_dir)
        log.info("ensemble member %d of %d: seed %d", i + 1, cfg.ensemble_size, member.seed)
        # When run again in the same folder, an ensemble keeps its finished members and
        # resumes an interrupted one from its last checkpoint.
        if (folder / "metrics.json").is_file():
            trained = json.loads((folder / "metrics.json").read_text())["config"]
            check_finished_member(folder, trained, member)
            log.info("seed %d finished earlier: %s", member.seed, folder / "metrics.json")
        else:
            if (folder / "checkpoints" / "last.ckpt").is_file():
                member.ckpt_path = str(folder / "checkpoints" / "last.ckpt")
            train(member, command)
        summary = json.loads((folder / "metrics.json").read_text())
        members.append({"seed": member.seed, **summary})
    paths = [m["best_checkpoint"] for m in members]
    combined = load_checkpoints(paths)
    datamodule = instantiate(member.data)
    datamodule.adopt(data_metadata(combined.hparams))
    log.info("the ensemble of %d members: validation, then test", len(paths))
    metrics = {}
    accelerator = cfg.trainer.accelerator
    for split in ("validation", "test") if cfg.test else ("validation",):
        metrics.update(run_split(combined, datamodule, split, accelerator, verbose=True))
    tested = [{k: v for k, v in m["metrics"].items() if k.startswith("test/")} for m in members]
    summary = {
        "command": command,
        "task": combined.task_name,
        "metrics": metrics,
        "member_test_mean": {k: statistics.mean(t[k] for t in tested) for k in tested[0]},
        "members": [
            {
                "seed": m["seed"],
                "test": t,
                "best_checkpoint": m["best_checkpoint"],
                "epochs": m["epochs"],
                "train_seconds": m["train_seconds"],
            }
            for m, t in zip(members, tested, strict=True)
        ],
        "perf": mean_perf([m["perf"] for m in members]),
        "parameters": sum(m["parameters"] for m in members),
        "train_seconds": round(sum(m["train_seconds"] for m in members), 1),
        "total_seconds": round(time.perf_counter() - start, 1),
        "git_revision": revision,
        "device": members[0]["device"],
        "config": OmegaConf.to_container(cfg, resolve=True),
    }
    write_summary(summary, Path(cfg.output_dir), results_file(cfg))
    return metrics
