"""Config values are checked before data and model are built: every shipped config passes,
each bad value raises a ConfigError naming the key, what is allowed and the value."""

import copy
import functools
from pathlib import Path
from typing import get_args

import pytest
from hydra import compose, initialize_config_dir
from hydra.core.override_parser.overrides_parser import OverridesParser
from omegaconf import OmegaConf

from rnn_tasks.config_checks import (
    OPTIMIZERS,
    PRECISIONS,
    validate_tool_config,
    validate_train_config,
)
from rnn_tasks.errors import ConfigError

CONFIGS = Path(__file__).parents[1] / "configs"
EXPERIMENTS = sorted(p.stem for p in (CONFIGS / "experiment").glob("*.yaml"))


def config(overrides, name="train"):
    with initialize_config_dir(str(CONFIGS), version_base="1.3"):
        return compose(name, overrides=overrides)


@functools.cache
def _base(name: str, first: str):
    return config([first], name)


def with_value(override: str, name="train", base="task=pos"):
    """`config([base, override], name)` in a millisecond rather than 0.1 s: one composed
    config, the value set as Hydra's parser reads it (`abc` a str, `1.5` a float, ...)."""
    cfg = copy.deepcopy(_base(name, base))
    parsed = OverridesParser.create().parse_override(override)
    OmegaConf.update(cfg, parsed.key_or_group, parsed.value(), merge=False)
    return cfg


@pytest.mark.parametrize(
    "overrides",
    [
        *[[f"task={t}", f"model={m}"] for t in ("lm", "pos", "cls") for m in ("elman", "lstm")],
        ["task=lm", "model=ffnn"],
        ["task=pos", "model=gru", "trainer=gpu", "logger=tensorboard"],
        ["task=cls", "trainer=ddp"],
        ["task=lm", "trainer=debug", "~logger"],
        *[[f"experiment={e}"] for e in EXPERIMENTS],
    ],
    ids=lambda o: " ".join(o),
)
def test_every_shipped_config_passes(overrides):
    validate_train_config(config(overrides))


@pytest.mark.parametrize(
    "override",
    [
        "trainer.max_epochs=1", "trainer.max_epochs=-1", "trainer.max_epochs=null",
        "trainer.limit_train_batches=0.25", "trainer.limit_train_batches=3",
        "trainer.val_check_interval=0.5", "trainer.val_check_interval=200",
        "trainer.devices=auto", "trainer.devices=[0,1]", "trainer.devices='0,1'",
        "trainer.devices=-1", "trainer.precision=bf16-mixed", "trainer.precision=16",
        "trainer.fast_dev_run=3", "trainer.max_time='00:01:30:00'", "ema_decay=0.999",
        "threads=2", "task.lr_milestones=[6,8]", "task.optimizer=adamw", "seed=0",
    ],
)  # fmt: skip
def test_values_lightning_and_the_tasks_take_pass(override):
    validate_train_config(with_value(override))


@pytest.mark.parametrize(
    ("override", "message"),
    [
        ("trainer.max_epochs=abc", "trainer.max_epochs must be null or a whole number >= -1"),
        ("trainer.max_epochs=-2", "trainer.max_epochs must be"),
        ("trainer.max_epochs=true", "trainer.max_epochs must be"),  # bool is an int in Python
        ("trainer.max_steps=2.5", "trainer.max_steps must be a whole number >= -1"),
        ("trainer.max_steps=null", "trainer.max_steps must be"),
        ("trainer.gradient_clip_val=-1", "trainer.gradient_clip_val must be null or a finite"),
        ("trainer.gradient_clip_val=nan", "trainer.gradient_clip_val must be"),
        ("trainer.gradient_clip_val=inf", "trainer.gradient_clip_val must be"),
        ("trainer.val_check_interval=1.5", "trainer.val_check_interval must be"),
        ("trainer.val_check_interval=0", "trainer.val_check_interval must be"),
        ("trainer.limit_train_batches=1.5", "trainer.limit_train_batches must be"),
        ("trainer.limit_val_batches=-1", "trainer.limit_val_batches must be"),
        ("trainer.limit_test_batches=all", "trainer.limit_test_batches must be"),
        ("trainer.devices=0", "trainer.devices must be"),
        ("trainer.devices=two", "trainer.devices must be"),
        ("trainer.accelerator=tpu", "trainer.accelerator must be one of ['cpu', 'gpu'"),
        ("trainer.precision=17", "trainer.precision must be null or one of"),
        ("trainer.precision=half", "trainer.precision must be"),
        ("trainer.max_time=90", "trainer.max_time must be null or a duration 'DD:HH:MM:SS'"),
        ("trainer.fast_dev_run=-1", "trainer.fast_dev_run must be"),
        ("seed=abc", "seed must be a whole number in [0, 4294967295]"),
        ("seed=-1", "seed must be"),
        ("seed=4294967296", "seed must be"),
        ("seed=1.5", "seed must be"),
        ("threads=0", "threads must be null or a whole number >= 1"),
        ("ensemble_size=0", "ensemble_size must be a whole number >= 1"),
        ("ensemble_size=false", "ensemble_size must be"),
        ("early_stopping_patience=-1", "early_stopping_patience must be a whole number >= 0"),
        ("ema_decay=1", "ema_decay must be null or a number in (0, 1)"),
        ("ema_decay=0", "ema_decay must be"),
        ("monitor_mode=maximum", "monitor_mode must be one of ['min', 'max']"),
        ("task.lr=0", "task.lr must be a finite number > 0"),
        ("task.lr=nan", "task.lr must be"),
        ("task.lr=fast", "task.lr must be"),
        ("task.weight_decay=-0.1", "task.weight_decay must be a finite number >= 0"),
        ("task.lr_decay=1.5", "task.lr_decay must be a number in (0, 1]"),
        ("task.lr_patience=-1", "task.lr_patience must be a whole number >= 0"),
        ("task.lr_milestones=[8,6]", "task.lr_milestones must be null or a list of increasing"),
        ("task.optimizer=rmsprop", "task.optimizer must be one of ['sgd', 'adam', 'adamw']"),
        ("data.batch_size=0", "data.batch_size must be a whole number >= 1"),
        ("data.batch_size=2.0", "data.batch_size must be"),
        ("model.hidden_size=-4", "model.hidden_size must be a whole number >= 1"),
        ("model.dropout=1.0", "model.dropout must be a number in [0, 1)"),
        ("debug=yes", "debug must be true or false"),
    ],
)
def test_a_bad_value_names_its_key_what_is_allowed_and_the_value(override, message):
    with pytest.raises(ConfigError) as err:
        validate_train_config(with_value(override))
    assert str(err.value).startswith(message) and ", got " in str(err.value)


def test_a_task_key_of_the_lm_is_checked_too():
    with pytest.raises(ConfigError, match=r"data.bptt must be a whole number >= 1, got 0"):
        validate_train_config(with_value("data.bptt=0", base="task=lm"))


def test_the_optimizers_are_the_tasks():
    from rnn_tasks.tasks.base import OPTIMIZERS as TASK_OPTIMIZERS

    assert OPTIMIZERS == tuple(TASK_OPTIMIZERS)


def test_the_precisions_are_lightnings():
    from lightning.pytorch.trainer.connectors.accelerator_connector import _PRECISION_INPUT

    lightning = {v for literal in get_args(_PRECISION_INPUT) for v in get_args(literal)}
    assert set(PRECISIONS) == lightning


@pytest.mark.parametrize("name", ["predict", "generate", "evaluate"])
def test_the_tool_configs_pass(name):
    extra = ["text=hi"] if name == "predict" else []
    validate_tool_config(config([f"ckpt_path={__file__}", *extra], name))
    validate_tool_config(config([f"ckpt_path=[{__file__},{__file__}]"], "evaluate"))


@pytest.mark.parametrize(
    ("name", "override", "message"),
    [
        ("generate", "temperature=nan", "temperature must be a finite number >= 0 (0: greedy)"),
        ("generate", "temperature=inf", "temperature must be"),
        ("generate", "temperature=-0.5", "temperature must be"),
        ("generate", "max_new_tokens=10001", "max_new_tokens must be a whole number in [0, 10000]"),
        ("generate", "max_new_tokens=-1", "max_new_tokens must be"),
        ("generate", "max_new_tokens=2.5", "max_new_tokens must be"),
        ("generate", "top_k=0", "top_k must be null or a whole number >= 1"),
        ("generate", "num_samples=0", "num_samples must be a whole number >= 1"),
        ("generate", "seed=-3", "seed must be null or a whole number in [0, 4294967295]"),
        ("generate", "seed=true", "seed must be"),
        ("predict", "k=0", "k must be a whole number >= 1"),
        ("evaluate", "split=train", "split must be one of ['test', 'validation'], got 'train'"),
        ("evaluate", "threads=-2", "threads must be null or a whole number >= 1"),
    ],
)
def test_a_bad_tool_value_is_named(name, override, message):
    with pytest.raises(ConfigError) as err:
        validate_tool_config(with_value(override, name, f"ckpt_path={__file__}"))
    assert str(err.value).startswith(message)


@pytest.mark.parametrize("paths", ["x.ckpt", f"[{__file__},x.ckpt]"])
def test_a_checkpoint_that_is_not_there_is_named_at_once(paths):
    with pytest.raises(FileNotFoundError, match="^checkpoint not found: x.ckpt$"):
        validate_tool_config(config([f"ckpt_path={paths}"], "evaluate"))
