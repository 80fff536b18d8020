"""How the command-line scripts end on a user's mistake: one `error:` line, exit code 2.

A user error is a wrong config value, a missing or malformed file, a wrong checkpoint or a
text that cannot be read: the exceptions of `is_user_error`, whose messages name the key,
file:line or value and what is allowed. The script prints `error: <message>` to stderr,
without a traceback, and exits with `EXIT_USER_ERROR`: 2, as argparse does for a bad command
line (1 stays what Python and Hydra exit with on a bug). Any other exception is a bug and
keeps its traceback. `debug=true` or `HYDRA_FULL_ERROR=1` shows the traceback of a user error
too (it then propagates to Hydra, which exits with 1).

    @hydra.main(...)
    def main(cfg):
        from rnn_tasks.cli import user_errors  # in main: `--help` stays fast
        with user_errors(cfg):
            ...

A training run that stops early (`rnn_tasks.guards.RunStopped`) prints `stopped: <why and
what to do>` and exits with its own code (docs/reliability.md). `SystemExit` passes
through `@hydra.main`, which prints a traceback for anything else.
"""

from __future__ import annotations

import os
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from omegaconf import DictConfig, OmegaConf
from omegaconf.errors import MissingMandatoryValue, OmegaConfBaseException

EXIT_USER_ERROR = 2
PACKAGE = Path(__file__).resolve().parent

USER_ERRORS: tuple[type[BaseException], ...] = (
    ValueError,  # rnn_tasks.errors.ConfigError, DataFormatError, a file that is no checkpoint
    FileNotFoundError,
    IsADirectoryError,
    NotADirectoryError,
    PermissionError,
    MissingMandatoryValue,  # `key: ???` not given on the command line
)


@contextmanager
def user_errors(cfg: DictConfig | None = None) -> Iterator[None]:
    """Around a script's work: a user error ends the process with one `error:` line on
    stderr and exit code 2; `cfg` is read for `debug`."""
    try:
        yield
    except Exception as raised:
        if show_traceback(cfg):
            raise
        err, key = instantiated_cause(raised)
        stopped = run_stopped(err)
        if stopped is not None:  # a run that stopped early: why, and its own exit code
            if not err.quiet:
                print(f"stopped: {err}", file=sys.stderr, flush=True)
            raise SystemExit(stopped) from None
        if not is_user_error(err):
            raise
        message = error_message(err)
        where = f"{key}: " if key and not message.startswith(f"{key}.") else ""
        print(f"error: {where}{message}", file=sys.stderr, flush=True)
        raise SystemExit(EXIT_USER_ERROR) from None


def instantiated_cause(err: BaseException) -> tuple[BaseException, str]:
    """What a class that Hydra's `instantiate` built raised (a data module refusing its
    arguments), rather than Hydra's wrapper, whose message adds lines of its own; and the
    key of the config node it was built from ("data"), or ""."""
    hydra_errors = sys.modules.get("hydra.errors")
    cause = err.__cause__
    if hydra_errors is None or not isinstance(err, hydra_errors.InstantiationException):
        return err, ""
    if not isinstance(cause, Exception) or not is_user_error(cause):
        return err, ""
    key = next((line[10:] for line in str(err).splitlines() if line.startswith("full_key: ")), "")
    return cause, key


def run_stopped(err: BaseException) -> int | None:
    """The exit code of a run that stopped early (`rnn_tasks.guards.RunStopped`: a signal,
    a non-finite loss, a failed checkpoint write, a folder in use), else None."""
    guards = sys.modules.get("rnn_tasks.guards")  # only a training run can have raised it
    return err.exit_code if guards is not None and isinstance(err, guards.RunStopped) else None


def is_user_error(err: BaseException) -> bool:
    """One of `USER_ERRORS`, `DatasetUnavailableError` (the data is not where it was
    asked for), or Lightning's `MisconfigurationException` (a trainer it cannot build). A
    `ValueError` counts only when rnn_tasks (or OmegaConf, on a config value) raised it:
    their messages are written for the user; one raised inside torch or Lightning is a
    bug and keeps its traceback."""
    if isinstance(err, ValueError) and not raised_here(err):
        return isinstance(err, OmegaConfBaseException)  # a config value OmegaConf refused
    if isinstance(err, USER_ERRORS):
        return True
    # Not imported here: rnn_tasks.data imports `datasets` (seconds), which predict.py and
    # generate.py never need. A module never imported cannot have raised its error.
    data_errors = sys.modules.get("rnn_tasks.data.errors")
    if data_errors is not None and isinstance(err, data_errors.DatasetUnavailableError):
        return True
    # Lightning's word for a trainer it cannot build (trainer=ddp without a GPU, ...).
    lightning_errors = sys.modules.get("lightning.fabric.utilities.exceptions")
    return lightning_errors is not None and isinstance(
        err, lightning_errors.MisconfigurationException
    )


def raised_here(err: BaseException) -> bool:
    """Whether `err` is one of rnn_tasks' own errors, or the innermost frame of its
    traceback is in the rnn_tasks package or a script of this project."""
    if type(err).__module__.startswith("rnn_tasks."):  # ConfigError, DataFormatError, ...
        return True
    tb = err.__traceback__
    if tb is None:
        return True
    while tb.tb_next is not None:
        tb = tb.tb_next
    path = Path(tb.tb_frame.f_code.co_filename).resolve()
    return PACKAGE in path.parents or path.parent.name == "scripts"


def show_traceback(cfg: DictConfig | None) -> bool:
    """`HYDRA_FULL_ERROR=1` (Hydra's own switch) or `debug=true` in the config."""
    if os.environ.get("HYDRA_FULL_ERROR") == "1":
        return True
    try:
        return cfg is not None and OmegaConf.select(cfg, "debug", default=False) is True
    except Exception:  # a broken `debug=${...}` must not hide the error being reported
        return False


def error_message(err: BaseException) -> str:
    """The line to print for a user error."""
    if isinstance(err, MissingMandatoryValue):
        key = err.full_key or str(err).splitlines()[0].rpartition(": ")[2]
        return f"{key} is required: give {key}=..."
    if isinstance(err, OSError) and err.filename is not None and err.strerror:
        return f"{err.filename}: {err.strerror}"  # not "[Errno 2] No such file ...: 'x'"
    if isinstance(err, OmegaConfBaseException):  # drop the "full_key: ..." lines it adds
        line = str(err).splitlines()[0] if str(err) else type(err).__name__
        key = getattr(err, "full_key", None)
        return line if not key or key in line else f"{key}: {line}"
    return str(err) or type(err).__name__
