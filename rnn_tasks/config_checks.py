"""Config values checked before any data or model is built.

A wrong value raises a `ConfigError` naming the key, what is allowed and the value given:
`trainer.max_epochs must be null or a whole number >= -1 (-1: no limit), got 'abc'`.
Without these checks `trainer.max_epochs=abc` ended in a bare AssertionError from inside
Lightning, after the data was read and the model built.

Hydra reads a command-line value as an int, float, bool, None or str; `bool` is a subclass of
`int` in Python, so each number check rejects `true` and `false` itself. A key that a config
does not have (another task's, or one removed with `~key`) is not checked.
"""

from __future__ import annotations

import math
import re
from collections.abc import Callable
from dataclasses import dataclass
from numbers import Integral, Real
from pathlib import Path

from omegaconf import DictConfig, OmegaConf

from .errors import ConfigError
from .nn.matmul import CHOICES as MATMUL_CHOICES
from .nn.precision import PRECISIONS as INFERENCE_PRECISIONS

# `generate.py temperature=0 max_new_tokens=1000000000` (greedy text that never draws the
# sentence end) printed nothing for hours, before the script streamed its words; it would
# still run for hours. 10,000 words is far beyond what an RNN LM continues coherently.
MAX_NEW_TOKENS = 10_000

# L.seed_everything replaces a seed outside numpy's range by another one with a warning only:
# the run would not be the one asked for.
MAX_SEED = 2**32 - 1

# The names of rnn_tasks.tasks.base.OPTIMIZERS, written out: importing the tasks imports
# Lightning (seconds), and a wrong value should be reported at once (a test compares them).
OPTIMIZERS = ("sgd", "adam", "adamw")

# Lightning 2.x's Trainer(precision=...) (`_PRECISION_INPUT`; a test compares the two).
PRECISIONS = (16, 32, 64, "16", "32", "64", "bf16", "16-true", "16-mixed", "bf16-true",
              "bf16-mixed", "32-true", "64-true", "transformer-engine",
              "transformer-engine-float16")  # fmt: skip

__all__ = [
    "MAX_NEW_TOKENS",
    "ConfigError",
    "validate_tool_config",
    "validate_train_config",
]


@dataclass(frozen=True)
class Allowed:
    """What a key may hold: a test and the words that say it; `a | b` allows either."""

    ok: Callable[[object], bool]
    text: str

    def __or__(self, other: Allowed) -> Allowed:
        return Allowed(lambda v: self.ok(v) or other.ok(v), f"{self.text} or {other.text}")


def whole(low: int, high: int | None = None, note: str = "") -> Allowed:
    """An int (not a bool) in [low, high]."""
    text = f"a whole number >= {low}" if high is None else f"a whole number in [{low}, {high}]"
    return Allowed(lambda v: _is_int(v) and v >= low and (high is None or v <= high), text + note)


def number(
    low: float, high: float | None = None, *, open_low=False, open_high=False, note: str = ""
) -> Allowed:
    """A finite int or float (not a bool) between `low` and `high`, ends open or closed."""
    if high is None:
        text = f"a finite number {'>' if open_low else '>='} {low}"
    else:
        text = f"a number in {'(' if open_low else '['}{low}, {high}{')' if open_high else ']'}"

    def ok(v) -> bool:
        if isinstance(v, bool) or not isinstance(v, Real) or not math.isfinite(v):
            return False
        above = v > low if open_low else v >= low
        below = high is None or (v < high if open_high else v <= high)
        return above and below

    return Allowed(ok, text + note)


def one_of(*options) -> Allowed:
    # Compared with their types: `true == 1` in Python, and `16 != "16"` for the reader.
    text = f"one of {list(options)}" if len(options) > 1 else repr(options[0])
    return Allowed(lambda v: any(type(v) is type(o) and v == o for o in options), text)


def _is_int(v) -> bool:
    return isinstance(v, Integral) and not isinstance(v, bool)


NULL = Allowed(lambda v: v is None, "null")
FLAG = Allowed(lambda v: isinstance(v, bool), "true or false")
TEXT = Allowed(lambda v: isinstance(v, str) and v != "", "a text")
SHARE = number(0, 1)
DROPOUT = number(0, 1, open_high=True)
DURATION = Allowed(
    lambda v: isinstance(v, str) and re.fullmatch(r"\d+:\d{1,2}:\d{1,2}:\d{1,2}", v) is not None,
    "a duration 'DD:HH:MM:SS'",
)
DEVICES = whole(1) | Allowed(
    lambda v: (
        v in (-1, "-1", "auto")
        or (isinstance(v, list) and v != [] and all(_is_int(i) and i >= 0 for i in v))
        or (isinstance(v, str) and re.fullmatch(r"\d+(\s*,\s*\d+)*\s*,?", v) is not None)
    ),
    "-1 (every device), 'auto', or device indices ([0, 1] or '0,1')",
)
MILESTONES = Allowed(
    lambda v: isinstance(v, list) and all(_is_int(m) and m >= 1 for m in v) and v == sorted(set(v)),
    "a list of increasing epochs >= 1",
)
BATCHES = whole(0, note=" (batches)") | number(0, 1)  # Lightning: a count or a share

TRAIN_RULES: dict[str, Allowed] = {
    "seed": whole(0, MAX_SEED),
    "threads": NULL | whole(1),
    "matmul": one_of(*MATMUL_CHOICES),
    "cuda_graphs": NULL | FLAG,
    "debug": FLAG,
    "ensemble_size": whole(1),
    "early_stopping_patience": whole(0, note=" (0: off)"),
    "ema_decay": NULL | number(0, 1, open_low=True, open_high=True),
    "nt_asgd": NULL | whole(1, note=" (validations)"),
    "monitor": TEXT,
    "monitor_mode": one_of("min", "max"),
    "test": FLAG,
    "flush_denormal": NULL | FLAG,
    "ckpt_path": NULL | TEXT,
    "results": NULL | TEXT,
    "data_root": TEXT,
    # lightning.Trainer
    "trainer.accelerator": one_of("cpu", "gpu", "cuda", "mps", "auto"),
    "trainer.devices": DEVICES,
    "trainer.strategy": TEXT,
    "trainer.precision": NULL | one_of(*PRECISIONS),
    "trainer.max_epochs": NULL | whole(-1, note=" (-1: no limit)"),
    "trainer.max_steps": whole(-1, note=" (-1: no limit)"),
    "trainer.max_time": NULL | DURATION,
    "trainer.gradient_clip_val": NULL | number(0),
    "trainer.val_check_interval": NULL | whole(1, note=" (batches)") | number(0, 1, open_low=True),
    "trainer.limit_train_batches": NULL | BATCHES,
    "trainer.limit_val_batches": NULL | BATCHES,
    "trainer.limit_test_batches": NULL | BATCHES,
    "trainer.log_every_n_steps": whole(0),
    "trainer.num_nodes": whole(1),
    "trainer.fast_dev_run": FLAG | whole(0, note=" (batches)"),
    "trainer.enable_progress_bar": FLAG,
    "trainer.deterministic": NULL | FLAG | one_of("warn"),
    # data
    "data.batch_size": whole(1),
    "data.eval_batch_size": NULL | whole(1),
    "data.bptt": whole(1),
    "data.min_freq": whole(1),
    "data.max_vocab_size": NULL | whole(1),
    "data.max_lines": NULL | whole(1),
    "data.streaming": FLAG,
    "data.num_workers": whole(0),
    "data.num_proc": NULL | whole(1),
    "data.val_fraction": SHARE,
    "data.test_fraction": SHARE,
    "data.lowercase": FLAG,
    "data.zero_digits": FLAG,
    "data.pretrained_words_limit": NULL | whole(1),
    # model
    "model.embedding_dim": whole(1),
    "model.hidden_size": whole(1),
    "model.num_layers": whole(1),
    "model.context": whole(1),
    "model.classifier_hidden": whole(1),
    "model.char_embedding_dim": whole(0, note=" (0: off)"),
    "model.char_hidden_size": whole(1),
    "model.dropout": DROPOUT,
    "model.embedding_dropout": DROPOUT,
    "model.weight_drop": DROPOUT,
    "model.output_dropout": DROPOUT,
    "model.word_dropout": DROPOUT,
    "model.bidirectional": FLAG,
    "model.tie_weights": FLAG,
    "model.variational_dropout": FLAG,
    "model.max_pool": FLAG,
    # task (the optimiser)
    "task.optimizer": one_of(*OPTIMIZERS),
    "task.lr": number(0, open_low=True),
    "task.weight_decay": number(0),
    "task.momentum": number(0),
    "task.lr_decay": number(0, 1, open_low=True),
    "task.lr_patience": whole(0),
    "task.lr_milestones": NULL | MILESTONES,
    "task.embeddings.freeze": FLAG,
    "task.activation_reg": number(0),
    "task.temporal_reg": number(0),
}

# evaluate.py, predict.py and generate.py: each has some of these keys.
TOOL_RULES: dict[str, Allowed] = {
    "threads": NULL | whole(1),
    "precision": one_of(*INFERENCE_PRECISIONS),
    "debug": FLAG,
    "split": one_of("test", "validation"),
    "accelerator": one_of("cpu", "gpu", "cuda", "mps", "auto"),
    "k": whole(1),
    "text_file": NULL | TEXT,
    "prompt_file": NULL | TEXT,
    "max_new_tokens": whole(0, MAX_NEW_TOKENS),
    "temperature": number(0, note=" (0: greedy)"),
    "top_k": NULL | whole(1),
    "seed": NULL | whole(0, MAX_SEED),
    "num_samples": whole(1),
    "score": FLAG,
    "probs": FLAG,
    "progress": FLAG,
    "batch_size": whole(1),
    "format": one_of("auto", "lines", "conllu", "tsv"),
    "input": NULL | TEXT,
    "output": TEXT,
}


def validate_train_config(cfg: DictConfig) -> None:
    """Raise a ConfigError for the first value of `cfg` (scripts/train.py's) out of range."""
    check(cfg, TRAIN_RULES)
    check_batches_divide(cfg)
    if cfg.get("ema_decay") and cfg.get("nt_asgd"):
        raise ConfigError(
            f"ema_decay={cfg.ema_decay} and nt_asgd={cfg.nt_asgd} each average the weights "
            "that validation and the checkpoints use: set one of them (the other to null)"
        )


def check_batches_divide(cfg: DictConfig) -> None:
    """Under DDP, the batch is divided among the processes (docs/distributed.md): a batch
    size that does not divide is refused here, before the processes start."""
    trainer = cfg.get("trainer") or {}
    devices, nodes = trainer.get("devices", 1), trainer.get("num_nodes", 1)
    if not (_is_int(devices) and devices > 0 and _is_int(nodes)) or devices * nodes == 1:
        return  # one process, or a count only the launcher knows (devices=-1, "auto")
    world = devices * nodes
    keys = ["data.batch_size"]
    if "LanguageModel" in str(OmegaConf.select(cfg, "task._target_")):
        keys.append("data.eval_batch_size")  # the LM's rows; the others split their examples
    for key in keys:
        size = OmegaConf.select(cfg, key)
        if _is_int(size) and size % world:
            raise ConfigError(
                f"{key}={size} cannot be divided among {world} processes (trainer.devices="
                f"{devices} x trainer.num_nodes={nodes}): make it a multiple of {world}"
            )


def validate_tool_config(cfg: DictConfig) -> None:
    """Raise a ConfigError for the first value of an evaluate/predict/generate config out
    of range, or a FileNotFoundError for a `ckpt_path` (one or a list) that is no file: at
    once, not after seconds of importing Lightning."""
    check(cfg, TOOL_RULES)
    paths = OmegaConf.select(cfg, "ckpt_path", throw_on_missing=True)
    for path in paths if OmegaConf.is_list(paths) else [paths]:
        if path is not None and not Path(str(path)).is_file():
            raise FileNotFoundError(f"checkpoint not found: {path}")  # as read_checkpoint says


_ABSENT = object()


def check(cfg: DictConfig, rules: dict[str, Allowed]) -> None:
    """Raise a ConfigError naming the first key of `rules` whose value is not allowed."""
    for key, allowed in rules.items():
        # A `???` raises MissingMandatoryValue, itself reported as a user error.
        value = OmegaConf.select(cfg, key, default=_ABSENT, throw_on_missing=True)
        if value is _ABSENT:
            continue
        if OmegaConf.is_config(value):
            value = OmegaConf.to_container(value, resolve=True)
        if not allowed.ok(value):
            raise ConfigError(f"{key} must be {allowed.text}, got {value!r}")
