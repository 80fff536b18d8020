"""What every entry point does the same way: torch threads, denormal floats, one console
handler for log lines, and text settings read as typed."""

from __future__ import annotations

import logging
import os
import platform
import sys
import warnings
from pathlib import Path

import torch
from omegaconf import OmegaConf

from .errors import ConfigError
from .nn.graphs import set_cuda_graphs
from .nn.matmul import set_matmul_backend

# Library warnings that do not hold here, or that a user can do nothing about: metrics.csv
# rows are carried over by `resume.prepend_metrics` (a new run refuses a folder with another
# run's checkpoints); `train/loss` is the epoch's mean however few steps an epoch has;
# Lightning's own use of a torch API torch deprecated; and its advice to sync logged values
# under DDP, where the epoch figures are torchmetrics' sums over every process already.
QUIET = (
    "Experiment logs directory .* exists and is not empty",
    "The number of training batches",
    "You're resuming from a checkpoint that ended before the epoch ended",  # ExactResume does
    r"`isinstance\(treespec, LeafSpec\)` is deprecated",
    r"It is recommended to use `self\.log\(.*sync_dist=True",
    # The streamed LM windows have a length and read with at most one worker (data/stream.py).
    r"Your `IterableDataset` has `__len__` defined",
)


def set_up_process(
    threads: int | None = None,
    flush_denormal: bool | None = None,
    matmul: str | None = None,
    cuda_graphs: bool | None = None,
) -> None:
    """`threads`: torch's CPU threads (None keeps torch's default, every core).
    `flush_denormal`: treat denormal floats as zero on CPU (None leaves it as it is).
    `matmul`: the recurrent kernels' matrix products (`rnn_tasks.nn.matmul`; None: chosen at
    their first use, from $RNN_TASKS_MATMUL or by measuring), after `threads`, which the
    measurement depends on.
    `cuda_graphs`: replay the recurrent loops on GPUs from CUDA graphs (`rnn_tasks.nn.graphs`;
    None: $RNN_TASKS_CUDA_GRAPHS, else on)."""
    one_console_handler()
    for message in QUIET:
        warnings.filterwarnings("ignore", message=message)
    if threads:
        torch.set_num_threads(threads)
    if flush_denormal is not None:
        # Vanishing errors in BPTT reach denormal floats, which x86 CPUs handle ~30x
        # slower (measured: an Elman LM step went from 0.15 s to 4.6 s); flushing them
        # to zero costs nothing the model can notice.
        torch.set_flush_denormal(flush_denormal)
    if matmul is not None:
        set_matmul_backend(matmul)
    if cuda_graphs is not None:
        set_cuda_graphs(cuda_graphs)


def cpu_model() -> str:
    """The CPU's model name (`/proc/cpuinfo`), for benchmark and results files: speed claims
    name the CPU they were measured on."""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def one_console_handler() -> None:
    # `import lightning` gives the "lightning" logger a console handler of its own; under
    # Hydra the root logger prints (and writes train.log) too, so every line came twice.
    if logging.getLogger().hasHandlers():
        logging.getLogger("lightning").handlers.clear()
    if process_rank() > 0:
        # Under DDP the first process speaks for all on the console; another one prints its
        # warnings and errors there, and the rest only to its own log file.
        for handler in logging.getLogger().handlers:
            if not isinstance(handler, logging.FileHandler):
                handler.setLevel(max(handler.level, logging.WARNING))


def process_rank() -> int:
    """This process's rank among the training processes, from the variables that the
    launchers set (torchrun: RANK; Lightning's own launcher: LOCAL_RANK; SLURM); 0 alone."""
    for name in ("RANK", "LOCAL_RANK", "SLURM_PROCID"):
        value = os.environ.get(name, "")
        if value.isdigit():
            return int(value)
    return 0


def text_setting(cfg, key: str) -> str:
    """`cfg[key]` as it was typed on the command line, taken literally.

    Hydra reads a bare `text=2020` as a number (and `true`, `null` as a bool and None), and
    OmegaConf reads `${...}` as an interpolation: `text="pay ${amount} now"` failed and
    `text=${oc.env:HOME}` classified the value of $HOME. A text to tag, classify or continue
    is neither: it is the override's value, quotes and escapes removed; `text=null` is the
    text "null". Without an override (a YAML default, a composed config), the value as
    written in the config, unresolved.
    """
    typed = typed_override(key)
    if typed is not None:
        return typed
    value = OmegaConf.to_container(cfg, resolve=False).get(key)  # no interpolation
    return "" if value is None else str(value)


def typed_override(key: str) -> str | None:
    """The value of the last command-line override of `key` as a user typed it, or None."""
    from hydra.core.hydra_config import HydraConfig
    from hydra.core.override_parser.overrides_parser import OverridesParser

    if not HydraConfig.initialized():  # a composed config may have no command line
        return None
    parser = OverridesParser.create()
    typed = None
    # Iterating the ListConfig itself would resolve an override `text=${x}` as `${x}`.
    for line in OmegaConf.to_container(HydraConfig.get().overrides.task, resolve=False):
        override = parser.parse_override(line)
        if override.key_or_group != key or override.is_delete():
            continue
        value = override.value()
        # A str has its quotes and escapes removed (and `${...}` kept as text); anything
        # else (2020, true, null, [a, b]) is the text after `=` as typed.
        typed = value if isinstance(value, str) else line.partition("=")[2].strip()
    return typed


def text_input(cfg, key: str, file_key: str) -> str:
    """The text of `key` (taken literally, see `text_setting`) or of the file `file_key`
    names (`-`: standard input), without its final line break.

    Raises:
        ConfigError: if both or neither are given.
        FileNotFoundError, ValueError: if the file cannot be read as UTF-8 text.
    """
    path = cfg.get(file_key)
    written = OmegaConf.to_container(cfg, resolve=False).get(key)  # "???": not given
    given = typed_override(key) is not None or written not in (None, "", "???")
    if path is None:
        if OmegaConf.is_missing(cfg, key):
            raise ConfigError(f"give {key}=... or {file_key}=PATH ({file_key}=- reads stdin)")
        return text_setting(cfg, key)
    if given:
        raise ConfigError(f"give {key} or {file_key}, not both ({file_key}={path})")
    try:
        if path == "-":
            text = sys.stdin.buffer.read().decode("utf-8")
        else:
            text = Path(path).read_text(encoding="utf-8")
    except UnicodeDecodeError as err:
        source = "standard input" if path == "-" else path
        raise ValueError(f"{source}: not UTF-8 text ({err.reason} at byte {err.start})") from None
    return text.removesuffix("\n").removesuffix("\r")
