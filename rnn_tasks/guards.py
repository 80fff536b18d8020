"""What keeps a run from losing or silently changing its results: numbers that go bad stop
it (`FiniteGuard`), a signal stops it with a checkpoint to resume from (`SignalStop`),
checkpoints are written whole or not at all and read as weights only (`SafeCheckpointIO`),
its folder is checked writable and held by one run at a time (`check_writable`, `RunLock`).

A run that stops raises a `RunStopped`, whose message says why and what to do, and whose
`exit_code` the command line exits with.
"""

from __future__ import annotations

import contextlib
import datetime
import logging
import math
import os
import shlex
import signal
import socket
import tempfile
import threading
from pathlib import Path

import lightning as L
import torch
from lightning.pytorch.plugins.io import TorchCheckpointIO

from .files import new_file_mode

log = logging.getLogger(__name__)


class RunStopped(RuntimeError):
    """A run stopped before its end, for a reason its message gives. `quiet`: another
    process of the run (DDP's first) says why, so this one stops without a word."""

    exit_code = 1
    quiet = False


class NonFiniteError(RunStopped):
    exit_code = 3


class CheckpointWriteError(RunStopped):
    exit_code = 74  # EX_IOERR


class RunInterrupted(RunStopped):
    """SIGTERM or SIGINT: exits with 128 + the signal's number (143, 130), as a shell does."""

    def __init__(
        self, signum: int, resume_from: Path | None = None, resume: str | None = None
    ) -> None:
        self.signum = signum
        self.exit_code = 128 + signum
        self.resume_from = resume_from
        name = signal.Signals(signum).name
        if resume_from is None:
            super().__init__(f"stopped by {name} before training had anything to save")
        elif resume is None:
            super().__init__(
                f"stopped by {name}; resume with ckpt_path={resume_from} (the same command "
                f"otherwise: it ends as the run that was not stopped would have)"
            )
        else:
            super().__init__(
                f"stopped by {name}; this resumes it, to the result the run that was not "
                f"stopped would have had:\n  {resume}"
            )

    def with_command(self, command: str, run_dir: Path) -> RunInterrupted:
        """The same stop, its message ending with the whole command that resumes it."""
        if self.resume_from is None:
            return self
        return RunInterrupted(self.signum, self.resume_from,
                              resume_command(command, self.resume_from, run_dir))  # fmt: skip


def resume_command(command: str, ckpt: Path, run_dir: Path) -> str:
    """`command` (a train.py command line, shell-quoted) resuming from `ckpt` in `run_dir`:
    the run goes on in its own folder."""
    kept = [w for w in shlex.split(command) if not w.startswith(("ckpt_path=", "hydra.run.dir="))]
    return shlex.join([*kept, f"ckpt_path={ckpt}", f"hydra.run.dir={run_dir}"])


# --- numbers --------------------------------------------------------------------------------


def non_finite(tensors) -> list[str]:
    """The names of the floating tensors in `tensors` (name -> tensor) with a NaN or inf."""
    named = [(n, t) for n, t in tensors.items() if torch.is_tensor(t) and t.is_floating_point()]
    if not named:
        return []
    # One read of the device for all of them (on a GPU each read waits for its work).
    finite = torch.stack([torch.isfinite(t).all().to(named[0][1].device) for _, t in named])
    return [n for (n, _), ok in zip(named, finite.tolist(), strict=True) if not ok]


class FiniteGuard(L.Callback):
    """Stops training at the first non-finite loss or gradient, before the optimiser step
    it would spoil, and at a non-finite validation loss; the checkpoints already written
    stay (`SafeCheckpointIO` never writes a non-finite model over them)."""

    def __init__(self, monitor: str = "val/loss") -> None:
        self.monitor = monitor

    def _stop(self, trainer: L.Trainer, pl_module, what: str) -> None:
        hp = pl_module.hparams
        raise NonFiniteError(
            f"training stopped: {what} at step {trainer.global_step} (epoch "
            f"{trainer.current_epoch}). The checkpoints in {trainer.default_root_dir}/"
            f"checkpoints are the last finite ones. Try a lower task.lr (now {hp.get('lr')}), "
            f"gradient clipping (trainer.gradient_clip_val=0.25), or task.optimizer=adam"
        )

    def on_before_backward(self, trainer, pl_module, loss) -> None:
        finite = bool(torch.isfinite(loss))  # the step's one read of the device
        mine = finite
        if trainer.world_size > 1:  # one process's bad loss stops them all, together
            finite = trainer.strategy.reduce_boolean_decision(finite, all=True)
        if not finite:
            what = f"the training loss is {float(loss.detach())}"
            if mine:
                what = "another process's training loss is not finite"
            self._stop(trainer, pl_module, what)

    def on_before_optimizer_step(self, trainer, pl_module, optimizer) -> None:
        grads = {n: p.grad for n, p in pl_module.named_parameters() if p.grad is not None}
        bad = non_finite(grads)
        if bad:
            self._stop(trainer, pl_module, f"the gradient of {bad[0]} is not finite")

    def on_validation_end(self, trainer, pl_module) -> None:
        value = trainer.callback_metrics.get(self.monitor)
        if not trainer.sanity_checking and value is not None and not math.isfinite(value):
            self._stop(trainer, pl_module, f"{self.monitor} is {float(value)}")


# --- checkpoints ----------------------------------------------------------------------------


class SafeCheckpointIO(TorchCheckpointIO):
    """Lightning's checkpoint reading and writing, made safe:

    - a checkpoint is written to a temporary file beside its name and renamed over it, so
      a kill leaves the old file or the new one, never half of one; a failed write (disk
      full, read-only) stops the run with the path and the OS's error, where Lightning's
      own save let training go on without any checkpoint;
    - a model with a NaN or inf weight is never written;
    - every read is `torch.load(weights_only=True)`, whatever the environment says
      (`TORCH_FORCE_NO_WEIGHTS_ONLY_LOAD` only changes a load that does not say).
    """

    def save_checkpoint(self, checkpoint: dict, path, storage_options=None) -> None:
        path = Path(path)
        bad = non_finite(checkpoint.get("state_dict", {}))
        if bad:
            raise NonFiniteError(
                f"not writing {path}: the weight {bad[0]} is not finite. The checkpoints "
                f"already in {path.parent} are the last finite ones"
            )
        tmp = None
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
            fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
            with os.fdopen(fd, "wb") as f:
                torch.save(checkpoint, f)
                f.flush()
                os.fsync(f.fileno())
            os.chmod(tmp, new_file_mode())  # mkstemp's 0600 would hide it from others
            os.replace(tmp, path)
        except OSError as err:
            if tmp is not None:
                with contextlib.suppress(OSError):
                    os.unlink(tmp)
            raise CheckpointWriteError(
                f"could not write the checkpoint {path}: {err.strerror or err}. Training "
                f"stopped; the checkpoints already in {path.parent} are kept"
            ) from err

    def load_checkpoint(self, path, map_location=None, weights_only=None) -> dict:
        try:
            return torch.load(path, map_location=map_location or "cpu", weights_only=True)
        except FileNotFoundError:
            raise
        except Exception as err:
            raise ValueError(
                f"{path} is not a checkpoint that torch.load(weights_only=True) can read "
                f"({type(err).__name__}): refused"
            ) from err


def check_writable(folder: Path) -> None:
    """Raises, before any training, if files cannot be written in `folder` (made if it
    is not there), or in its `checkpoints` folder where that exists already."""
    for place in (folder, folder / "checkpoints"):
        try:
            if place == folder:
                place.mkdir(parents=True, exist_ok=True)
            elif not place.exists():
                continue  # made in `folder`, which takes files
            with tempfile.TemporaryFile(dir=place):
                pass
        except OSError as err:
            raise CheckpointWriteError(
                f"cannot write in {place}: {err.strerror or err}. Give the run a folder it "
                f"can write (hydra.run.dir=...)"
            ) from err


# --- one run per folder ---------------------------------------------------------------------


class RunLock:
    """Holds `folder/run.lock` while a run trains there; a second run into the same folder
    is refused at once, with the first one's process and command.

    The lock is the operating system's (`flock`), so it dies with its process: a run
    killed with SIGKILL leaves the file, but not the lock, and its resume is not blocked.
    Where `flock` does not exist (Windows) there is no lock.
    """

    def __init__(self, folder: Path, command: str | None = None) -> None:
        self.path = Path(folder) / "run.lock"
        self.command = command
        self._fd: int | None = None

    def __enter__(self) -> RunLock:
        try:
            import fcntl
        except ImportError:
            return self
        while True:
            fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o644)
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except OSError:
                holder = os.read(fd, 4096).decode(errors="replace").strip() or "unknown"
                os.close(fd)
                raise RunFolderBusy(
                    f"{self.path.parent} is in use by another run ({holder}): wait for it "
                    f"to end, or train into another folder"
                ) from None
            if self._still_named(fd):
                break
            os.close(fd)  # the run before unlinked the file we locked: lock the new one

        started = datetime.datetime.now().isoformat(timespec="seconds")
        about = f"pid {os.getpid()} on {socket.gethostname()}, started {started}"
        os.ftruncate(fd, 0)
        os.write(fd, (about + (f": {self.command}" if self.command else "") + "\n").encode())
        self._fd = fd
        return self

    def _still_named(self, fd: int) -> bool:
        """Whether `fd` is still the file at `self.path` (not one unlinked meanwhile)."""
        try:
            return os.path.samestat(os.fstat(fd), os.stat(self.path))
        except FileNotFoundError:
            return False

    def __exit__(self, *exc) -> None:
        if self._fd is not None:
            with contextlib.suppress(OSError):
                self.path.unlink()
            os.close(self._fd)
            self._fd = None


class RunFolderBusy(RunStopped):
    exit_code = 75  # EX_TEMPFAIL: try again once the other run has ended


# --- signals --------------------------------------------------------------------------------


class SignalStop(L.Callback):
    """SIGTERM and SIGINT stop a run with a checkpoint at the point of interruption.

    While training, the signal is noted and the run stops after the batch it is in, with
    `last.ckpt` written there (`save_last`), or at the next epoch's start when the
    batch ended an epoch (whose validation and `last.ckpt` come first); before training
    there is nothing to save and it stops at once. A second signal stops it at once.
    Lightning's own SIGTERM handling (which exits with code 0) is replaced while training.

    Args:
        save_last: `(trainer, batch_idx)` writes `last.ckpt` after that batch and returns
            its path, or None where it cannot be written there (`LastCheckpoint.save_now`).
        last: the path of `last.ckpt`.
    """

    SIGNALS = (signal.SIGTERM, signal.SIGINT)

    def __init__(self, save_last, last: Path) -> None:
        self.save_last = save_last
        self.last = last
        self.received: int | None = None
        self.training = False
        self._previous: dict = {}

    def install(self) -> None:
        if threading.current_thread() is not threading.main_thread():
            return  # signals reach the main thread only
        for sig in self.SIGNALS:
            previous = signal.signal(sig, self._handle)
            self._previous.setdefault(sig, previous)

    def uninstall(self) -> None:
        for sig, previous in self._previous.items():
            signal.signal(sig, previous)
        self._previous = {}

    def _handle(self, signum: int, frame) -> None:
        if self.received is not None or not self.training:
            self.received = signum
            raise RunInterrupted(signum, self.last if self.last.is_file() else None)
        self.received = signum
        log.warning(
            "%s received: stopping after this batch with a checkpoint to resume from "
            "(send it again to stop at once)",
            signal.Signals(signum).name,
        )

    def on_train_start(self, trainer, pl_module) -> None:
        self.install()  # again: Lightning put its own SIGTERM handler in front of ours
        self.training = True

    def _stopping(self, trainer) -> bool:
        """Whether to stop here; on several processes, whether any of them was signalled,
        decided by all of them together: a signal that lands while this process waits in
        that collective counts at the next decision, since stopping on it alone would leave
        the others waiting in another collective (a hang)."""
        if trainer.world_size == 1:
            return self.received is not None
        stop = trainer.strategy.reduce_boolean_decision(self.received is not None, all=False)
        if stop and self.received is None:
            self.received = signal.SIGTERM  # another process's signal
        return stop

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx) -> None:
        if self._stopping(trainer):
            saved = self.save_last(trainer, batch_idx)
            if saved is not None:
                raise RunInterrupted(self.received, saved)

    def on_train_epoch_start(self, trainer, pl_module) -> None:
        if self._stopping(trainer):  # the last epoch's checkpoint is written
            raise RunInterrupted(self.received, self.last)

    def on_train_end(self, trainer, pl_module) -> None:
        self.training = False
