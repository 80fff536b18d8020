"""A run cannot silently lose or change its results: kill and resume, signals, non-finite
numbers, disk faults, one run per folder, weights-only reads (docs/reliability.md's table).

The kill tests are real processes killed with SIGKILL/SIGTERM/SIGINT in the middle of an
epoch; each compares the resumed run with one that was never stopped.
"""

import csv
import errno
import functools
import json
import logging
import os
import pickle
import shlex
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import pytest
import torch
from omegaconf import OmegaConf
from test_train import make_cfg

from rnn_tasks import guards
from rnn_tasks.guards import (
    CheckpointWriteError,
    NonFiniteError,
    RunFolderBusy,
    RunInterrupted,
    RunLock,
    SafeCheckpointIO,
)
from rnn_tasks.train import strict_json, train

ROOT = Path(__file__).parents[1]
TINY = ["model.embedding_dim=16", "model.hidden_size=16", "threads=1", "model.output_dropout=0.3",
        "trainer.enable_progress_bar=false"]  # fmt: skip


@functools.cache
def ptb_head(lines: int = 300) -> Path:
    """A folder with the first `lines` lines of each PTB split, for a streamed run."""
    import treebank

    folder = Path(tempfile.mkdtemp(prefix="ptb_head_"))
    for split in ("train", "valid", "test"):
        head = treebank.penn[split].splitlines()[:lines]
        (folder / f"ptb.{split}.txt").write_text("\n".join(head) + "\n")
    return folder


TASKS = {
    "lm": ["task=lm", "data.max_lines=300", "data.batch_size=4", "data.bptt=10"],
    "lm-streamed": [
        "task=lm",
        "data.path={ptb_head}",
        "data.streaming=true",
        "data.batch_size=4",
        "data.bptt=10",
    ],
    "pos": ["task=pos", "model.char_embedding_dim=8"],
    "cls": ["task=cls", "model.word_dropout=0.2"],
}


def command(task: str, out: Path, *extra: str) -> list[str]:
    args = [arg.replace("{ptb_head}", str(ptb_head())) for arg in TASKS[task]]
    return [sys.executable, str(ROOT / "scripts" / "train.py"), *args, *TINY,
            "trainer.max_epochs=4", "checkpoint_every_steps=3", f"hydra.run.dir={out}",
            *extra]  # fmt: skip


def run_to_end(cmd: list[str]) -> subprocess.CompletedProcess:
    proc = subprocess.run(cmd, capture_output=True, text=True, cwd=ROOT, timeout=600)
    assert proc.returncode == 0, proc.stderr[-3000:]
    return proc


def stop_after_first_checkpoint(cmd: list[str], out: Path, how: int) -> subprocess.Popen:
    """Starts `cmd` and sends it `how` as soon as it has written a mid-epoch last.ckpt."""
    proc = subprocess.Popen(cmd, cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            text=True)  # fmt: skip
    last = out / "checkpoints" / "last.ckpt"
    deadline = time.monotonic() + 300
    while not last.is_file():
        assert proc.poll() is None, proc.communicate()[1][-3000:]
        assert time.monotonic() < deadline
        time.sleep(0.01)
    proc.send_signal(how)
    proc.wait(timeout=300)
    return proc


def weights(path: Path) -> dict:
    return torch.load(path, map_location="cpu", weights_only=True)["state_dict"]


def summary(out: Path) -> dict:
    return json.loads((out / "metrics.json").read_text())


def logged(out: Path) -> list[dict]:
    """metrics.csv without its timings (perf/*), which no two runs share."""
    with open(out / "metrics.csv", newline="") as f:
        rows = list(csv.DictReader(f))
    return [{k: v for k, v in r.items() if not k.startswith("perf/")} for r in rows]


def results(summary: dict) -> dict:
    return {k: v for k, v in summary["metrics"].items() if not k.startswith("perf/")}


def assert_same_run(resumed: Path, uninterrupted: Path) -> None:
    for name in ("last.ckpt", "best.ckpt"):
        ours = weights(resumed / "checkpoints" / name)
        theirs = weights(uninterrupted / "checkpoints" / name)
        assert ours.keys() == theirs.keys()
        for key in ours:  # bit for bit: CPU kernels are deterministic at one thread
            assert torch.equal(ours[key], theirs[key]), f"{name}: {key}"
    assert results(summary(resumed)) == results(summary(uninterrupted))
    assert summary(resumed)["epochs"] == summary(uninterrupted)["epochs"]
    assert logged(resumed) == logged(uninterrupted)


@pytest.fixture(scope="module")
def uninterrupted(tmp_path_factory):
    runs = {}
    for task in TASKS:
        out = tmp_path_factory.mktemp(f"whole-{task}")
        run_to_end(command(task, out))
        runs[task] = out
    return runs


@pytest.mark.slow
@pytest.mark.parametrize("task", list(TASKS))
def test_a_run_killed_mid_epoch_resumes_to_the_uninterrupted_result(task, tmp_path, uninterrupted):
    killed = tmp_path / "killed"
    proc = stop_after_first_checkpoint(command(task, killed), killed, signal.SIGKILL)
    assert proc.returncode == -signal.SIGKILL
    assert not (killed / "metrics.json").exists()  # it was stopped before its end
    resumed = tmp_path / "resumed"
    run_to_end(command(task, resumed, f"ckpt_path={killed / 'checkpoints' / 'last.ckpt'}"))
    assert_same_run(resumed, uninterrupted[task])
    # The time of the run before the kill counts too.
    assert summary(resumed)["train_seconds"] > 0


@pytest.mark.slow
def test_a_run_resumed_in_place_keeps_its_earlier_metrics(tmp_path, uninterrupted):
    run_dir = tmp_path / "run"
    stop_after_first_checkpoint(command("cls", run_dir), run_dir, signal.SIGKILL)
    run_to_end(command("cls", run_dir, f"ckpt_path={run_dir / 'checkpoints' / 'last.ckpt'}"))
    assert_same_run(run_dir, uninterrupted["cls"])


@pytest.mark.slow
@pytest.mark.parametrize("how", [signal.SIGTERM, signal.SIGINT], ids=["SIGTERM", "SIGINT"])
def test_a_signal_saves_last_ckpt_says_how_to_resume_and_exits_non_zero(
    how, tmp_path, uninterrupted
):
    out = tmp_path / "stopped"
    proc = stop_after_first_checkpoint(command("pos", out), out, how)
    stderr = proc.stderr.read()
    assert proc.returncode == 128 + how, stderr[-3000:]  # 143, 130: as a shell reports them
    assert "Traceback" not in stderr
    stopped = summary(out)
    assert stopped["status"] == "interrupted"
    # The message ends with the whole command that resumes the run (here, in its folder).
    resume = shlex.split(stderr.strip().splitlines()[-1])
    assert resume[:2] == ["python", "scripts/train.py"] and stopped["stopped"].endswith(
        shlex.join(resume)
    )
    assert f"ckpt_path={out / 'checkpoints' / 'last.ckpt'}" in resume
    run_to_end([sys.executable, *resume[1:]])
    assert_same_run(out, uninterrupted["pos"])


# --- non-finite numbers ---------------------------------------------------------------------


def test_a_non_finite_loss_stops_the_run_and_keeps_finite_checkpoints(tmp_path):
    # lr 1e38: the first step's weights overflow, the second step's loss is NaN.
    cfg = make_cfg(tmp_path, ["task=pos", "model=elman", "model.nonlinearity=relu",
                              "task.optimizer=sgd", "task.lr=1e38", "~logger", *TINY,
                              "checkpoint_every_steps=1"])  # fmt: skip
    with pytest.raises(NonFiniteError, match=r"at step 1 .*Try a lower task.lr") as err:
        train(cfg)
    assert err.value.exit_code != 0
    for ckpt in (tmp_path / "checkpoints").glob("*.ckpt"):
        assert all(torch.isfinite(w).all() for w in weights(ckpt).values() if w.is_floating_point())
    stopped = json.loads((tmp_path / "metrics.json").read_text())  # strict JSON
    assert stopped["status"] == "failed" and "at step 1 " in stopped["stopped"]


def test_a_non_finite_gradient_stops_before_the_optimiser_step(tmp_path, monkeypatch):
    from rnn_tasks.tasks.classification import ClassificationTask

    step = ClassificationTask.training_step

    def nan_gradient(self, batch, batch_idx):
        loss = step(self, batch, batch_idx)
        return loss * torch.tensor(float("inf")) * 0 if batch_idx == 2 else loss  # inf*0: NaN

    monkeypatch.setattr(ClassificationTask, "training_step", nan_gradient)
    cfg = make_cfg(tmp_path, ["task=cls", "~logger", *TINY])
    with pytest.raises(NonFiniteError, match="the training loss is nan at step 2"):
        train(cfg)


def test_checkpoint_io_never_writes_a_non_finite_model(tmp_path):
    path = tmp_path / "last.ckpt"
    SafeCheckpointIO().save_checkpoint({"state_dict": {"w": torch.ones(2)}}, path)
    with pytest.raises(NonFiniteError, match="the weight w is not finite"):
        nan = torch.tensor([1.0, float("nan")])
        SafeCheckpointIO().save_checkpoint({"state_dict": {"w": nan}}, path)
    assert torch.equal(torch.load(path, weights_only=True)["state_dict"]["w"], torch.ones(2))


def test_summaries_are_strict_json():
    value = {"a": float("nan"), "b": [float("inf"), 1.5], "c": {"d": -float("inf")}}
    assert strict_json(value) == {"a": None, "b": [None, 1.5], "c": {"d": None}}
    json.dumps(strict_json(value), allow_nan=False)


# --- disk -----------------------------------------------------------------------------------


def test_a_folder_that_cannot_be_written_is_refused_before_training(tmp_path):
    (tmp_path / "checkpoints").write_text("a file where the folder should be")
    cfg = make_cfg(tmp_path, ["task=cls", "~logger", *TINY])
    with pytest.raises(CheckpointWriteError, match=r"cannot write in .*checkpoints"):
        train(cfg)
    assert not (tmp_path / "metrics.json").exists()


@pytest.mark.parametrize("code", [errno.ENOSPC, errno.EROFS, errno.EACCES])
def test_a_failed_checkpoint_write_stops_the_run_and_leaves_no_half_file(tmp_path, monkeypatch,
                                                                         code):  # fmt: skip
    def fail(obj, f, *args, **kwargs):
        f.write(b"half a checkpoint")
        raise OSError(code, os.strerror(code))

    monkeypatch.setattr(guards.torch, "save", fail)
    cfg = make_cfg(tmp_path, ["task=cls", "~logger", *TINY, "trainer.max_epochs=3"])
    with pytest.raises(CheckpointWriteError, match=os.strerror(code)) as err:
        train(cfg)
    assert "checkpoints" in str(err.value) and err.value.exit_code == 74
    assert os.listdir(tmp_path / "checkpoints") == []  # no temporary file left behind
    assert json.loads((tmp_path / "metrics.json").read_text())["status"] == "failed"


def test_a_checkpoint_write_replaces_the_old_file_whole(tmp_path, monkeypatch):
    path = tmp_path / "last.ckpt"
    SafeCheckpointIO().save_checkpoint({"state_dict": {"w": torch.ones(2)}}, path)

    def fail(obj, f, *args, **kwargs):
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(guards.torch, "save", fail)
    with pytest.raises(CheckpointWriteError):
        SafeCheckpointIO().save_checkpoint({"state_dict": {"w": torch.zeros(2)}}, path)
    assert os.listdir(tmp_path) == ["last.ckpt"]
    assert torch.equal(torch.load(path, weights_only=True)["state_dict"]["w"], torch.ones(2))


def test_a_checkpoint_gets_the_permissions_of_any_new_file(tmp_path):
    # Written through a private temporary file (0600), it must still be as readable as a
    # file the user's umask allows: a checkpoint is shared on a cluster.
    mask = os.umask(0o022)
    try:
        SafeCheckpointIO().save_checkpoint({"state_dict": {}}, tmp_path / "last.ckpt")
    finally:
        os.umask(mask)
    assert (tmp_path / "last.ckpt").stat().st_mode & 0o777 == 0o644


# --- one run per folder ---------------------------------------------------------------------


def test_a_second_run_into_a_folder_in_use_is_refused_naming_the_first(tmp_path):
    record = tmp_path / ".hydra" / "config.yaml"
    record.parent.mkdir()
    record.write_text("the first run's config\n")
    with RunLock(tmp_path, "python scripts/train.py task=cls"):
        cfg = make_cfg(tmp_path, ["task=cls", "~logger", *TINY])
        with pytest.raises(RunFolderBusy, match=rf"pid {os.getpid()} .*task=cls"):
            train(cfg)
    assert not list((tmp_path / "checkpoints").glob("*.ckpt"))
    assert record.read_text() == "the first run's config\n"  # Hydra's record is the first's


def test_a_second_train_py_into_a_folder_in_use_leaves_the_first_runs_record(tmp_path):
    # Hydra would write .hydra/ before the run reaches its lock; train.py writes it after.
    record = tmp_path / ".hydra" / "config.yaml"
    record.parent.mkdir()
    record.write_text("the first run's config\n")
    with RunLock(tmp_path, "the first run"):
        proc = subprocess.run(
            [sys.executable, str(ROOT / "scripts" / "train.py"), *TASKS["cls"], *TINY,
             f"hydra.run.dir={tmp_path}"],
            capture_output=True, text=True, cwd=ROOT, timeout=300,
        )  # fmt: skip
    assert proc.returncode == RunFolderBusy.exit_code, proc.stderr[-2000:]
    assert "the first run" in proc.stderr
    assert record.read_text() == "the first run's config\n"


def test_a_lock_left_by_a_killed_run_does_not_block(tmp_path):
    (tmp_path / "run.lock").write_text("pid 1 on elsewhere, started long ago\n")
    with RunLock(tmp_path):  # the file is there, but no process holds the lock
        pass
    assert not (tmp_path / "run.lock").exists()


def test_a_lock_file_unlinked_by_the_run_before_is_locked_anew(tmp_path, monkeypatch):
    # The run before unlinks run.lock as it ends: a run that opened the old file before
    # that must not hold a lock nobody else can see; it locks the file at the path.
    import fcntl

    flock, calls = fcntl.flock, []

    def released_meanwhile(fd, op):
        calls.append(fd)
        if len(calls) == 1:
            (tmp_path / "run.lock").unlink()
        return flock(fd, op)

    monkeypatch.setattr(fcntl, "flock", released_meanwhile)
    with RunLock(tmp_path) as lock:
        assert len(calls) == 2
        assert os.path.samestat(os.fstat(lock._fd), os.stat(tmp_path / "run.lock"))


def test_a_lock_held_by_another_process_is_refused(tmp_path):
    holder = subprocess.Popen(
        [sys.executable, "-c", "import sys, time; from pathlib import Path; "
         "from rnn_tasks.guards import RunLock; "
         "lock = RunLock(Path(sys.argv[1]), 'the first run').__enter__(); "
         "print('held', flush=True); time.sleep(60)", str(tmp_path)],
        stdout=subprocess.PIPE, text=True, cwd=ROOT,
    )  # fmt: skip
    try:
        assert holder.stdout.readline().strip() == "held"
        with pytest.raises(RunFolderBusy, match=rf"pid {holder.pid} .*the first run"):
            RunLock(tmp_path).__enter__()
    finally:
        holder.kill()
        holder.wait()
    with RunLock(tmp_path):  # its lock died with it
        pass


# --- weights only ---------------------------------------------------------------------------


class Payload:
    def __reduce__(self):
        return (os.system, ("touch PWNED",))


def test_a_planted_pickle_beside_last_ckpt_is_refused_before_training(tmp_path, monkeypatch):
    monkeypatch.setenv("TORCH_FORCE_NO_WEIGHTS_ONLY_LOAD", "1")
    monkeypatch.chdir(tmp_path)
    first = tmp_path / "first"
    train(make_cfg(first, ["task=cls", "~logger", *TINY, "trainer.max_epochs=1"]))
    with open(first / "checkpoints" / "best.ckpt", "wb") as f:
        pickle.dump({"state_dict": Payload()}, f)
    last = first / "checkpoints" / "last.ckpt"
    again = ["task=cls", "~logger", *TINY, "trainer.max_epochs=2", f"ckpt_path={last}"]
    resumed = make_cfg(tmp_path / "second", again)
    with pytest.raises(ValueError, match=r"best.ckpt is not a checkpoint that torch.load\(weights"):
        train(resumed)
    assert not (tmp_path / "PWNED").exists()
    assert not list((tmp_path / "second" / "checkpoints").glob("*.ckpt"))


def test_checkpoint_io_reads_weights_only_whatever_the_environment(tmp_path, monkeypatch):
    monkeypatch.setenv("TORCH_FORCE_NO_WEIGHTS_ONLY_LOAD", "1")
    monkeypatch.chdir(tmp_path)
    path = tmp_path / "x.ckpt"
    with open(path, "wb") as f:
        pickle.dump(Payload(), f)
    with pytest.raises(ValueError, match="x.ckpt is not a checkpoint"):
        SafeCheckpointIO().load_checkpoint(path)
    assert not (tmp_path / "PWNED").exists()


def test_a_signal_before_training_stops_at_once():
    stop = guards.SignalStop(lambda trainer, batch_idx: None, Path("nowhere/last.ckpt"))
    stop.install()
    try:
        with pytest.raises(RunInterrupted, match="SIGTERM before training") as err:
            os.kill(os.getpid(), signal.SIGTERM)
            time.sleep(1)
        assert err.value.exit_code == 143
    finally:
        stop.uninstall()


def crash_and_resume(tmp_path, monkeypatch, base: list[str], epoch: int, step: int) -> Path:
    """Trains `base` uninterrupted into whole/, and again crashing (an exception, in process)
    at batch `step` of `epoch` into crashed/, then resumes that from its last.ckpt into
    resumed/. Returns the crashed run's last.ckpt."""
    import lightning as L

    import rnn_tasks.train as train_module

    class Crash(L.Callback):
        def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx):
            if trainer.current_epoch == epoch and batch_idx == step:
                raise KeyError("crash")

    build = train_module.build_trainer
    train(make_cfg(tmp_path / "whole", base))

    def crashing(cfg, output_dir, started):
        trainer = build(cfg, output_dir, started)
        trainer.callbacks.insert(0, Crash())
        return trainer

    monkeypatch.setattr(train_module, "build_trainer", crashing)
    with pytest.raises(KeyError):
        train(make_cfg(tmp_path / "crashed", base))
    monkeypatch.setattr(train_module, "build_trainer", build)
    last = tmp_path / "crashed" / "checkpoints" / "last.ckpt"
    train(make_cfg(tmp_path / "resumed", [*base, f"ckpt_path={last}"]))
    return last


def test_a_run_stopped_after_an_epoch_resumes_exactly(tmp_path, monkeypatch):
    # A crash in epoch 1 with no mid-epoch checkpoint: the resume starts from epoch 0's end.
    base = ["task=cls", *TINY, "trainer.max_epochs=3", "checkpoint_every_minutes=null"]
    last = crash_and_resume(tmp_path, monkeypatch, base, epoch=1, step=5)
    assert torch.load(last, weights_only=True)["epoch"] == 0
    assert_same_run(tmp_path / "resumed", tmp_path / "whole")


def learning_rates(out: Path) -> list[str]:
    return [r["lr-Adam"] for r in logged(out) if r.get("lr-Adam")]


@pytest.mark.parametrize(
    "schedule",
    # lr 1e-7: the validation loss moves less than the plateau threshold, so it decays
    [["task.lr_milestones=[1,2]"], ["task.lr_patience=0", "task.lr=1e-7"]],
    ids=["milestones", "plateau"],
)
def test_a_resumed_epoch_still_steps_the_learning_rate_schedule(tmp_path, monkeypatch, schedule):
    # Lightning skips the epoch-end scheduler step of an epoch it resumed mid-way; the
    # resumed run must still decay the rate where the uninterrupted one did.
    base = ["task=cls", *TINY, "trainer.max_epochs=3", "checkpoint_every_minutes=null",
            "checkpoint_every_steps=3", *schedule]  # fmt: skip
    last = crash_and_resume(tmp_path, monkeypatch, base, epoch=1, step=4)
    assert torch.load(last, weights_only=True)["epoch"] == 1  # mid-epoch 1
    rates = learning_rates(tmp_path / "whole")
    assert len(set(rates)) > 1, f"the schedule never decayed: {rates}"  # the test can fail
    assert learning_rates(tmp_path / "resumed") == rates
    recorded = OmegaConf.load(tmp_path / "resumed" / ".hydra" / "overrides.yaml")
    assert f"ckpt_path={last}" in recorded  # the run's record, written under its lock
    assert_same_run(tmp_path / "resumed", tmp_path / "whole")


def test_a_second_signal_stops_at_once():
    stop = guards.SignalStop(lambda trainer, batch_idx: None, Path("nowhere/last.ckpt"))
    stop.training = True
    stop._handle(signal.SIGINT, None)  # noted: training stops after this batch
    with pytest.raises(RunInterrupted) as err:
        stop._handle(signal.SIGINT, None)
    assert err.value.exit_code == 130


def test_a_signal_during_the_processes_decision_waits_for_the_next_one(tmp_path):
    """Under DDP a process saves and stops only on what all of them decided: a signal that
    lands while the first process waits in that collective (its handler runs after it)
    must not make it save alone, which left the other waiting in the next batch (a hang)."""
    from types import SimpleNamespace

    saved = []
    stop = guards.SignalStop(lambda trainer, batch_idx: saved.append(batch_idx) or tmp_path,
                             tmp_path / "last.ckpt")  # fmt: skip
    stop.training = True
    others = iter([False, True])  # the decision of this batch, then of the next

    def reduce_boolean_decision(mine, all):
        if stop.received is None:
            stop._handle(signal.SIGTERM, None)  # lands during the first collective
        return mine or next(others)

    trainer = SimpleNamespace(world_size=2, strategy=SimpleNamespace(
        reduce_boolean_decision=reduce_boolean_decision))  # fmt: skip
    stop.on_train_batch_end(trainer, None, None, None, 5)
    assert saved == []  # the others did not know: no process saves yet
    with pytest.raises(RunInterrupted):
        stop.on_train_batch_end(trainer, None, None, None, 6)
    assert saved == [6]


def test_a_non_finite_validation_loss_stops_the_run():
    from types import SimpleNamespace

    trainer = SimpleNamespace(callback_metrics={"val/loss": torch.tensor(float("inf"))},
                              sanity_checking=False, global_step=7, current_epoch=1,
                              default_root_dir="run")  # fmt: skip
    module = SimpleNamespace(hparams={"lr": 3.0})
    with pytest.raises(NonFiniteError, match="val/loss is inf at step 7"):
        guards.FiniteGuard("val/loss").on_validation_end(trainer, module)


def test_every_row_of_the_fault_table_names_a_test_that_exists():
    table = (ROOT / "docs" / "reliability.md").read_text().split("## The faults")[1]
    rows = [line for line in table.splitlines() if line.startswith("| ") and line[2].isdigit()]
    assert len(rows) >= 30
    previous = None
    for row in rows:
        cell = row.rstrip(" |").rsplit("|", 1)[1].strip().strip("`")
        if cell.startswith("..."):  # another case of the test above
            cell = previous
        file, _, name = cell.rpartition("::") if "::" in cell else ("test_reliability.py", "", cell)
        name = name.split("[")[0]
        assert f"def {name}(" in (ROOT / "tests" / file).read_text(), row
        previous = f"{file}::{name}"


def test_a_mid_epoch_checkpoint_is_saved_whole_and_says_so(tmp_path, caplog):
    # LastCheckpoint asks for the whole state (optimiser, callbacks) in so many words, not
    # through Lightning's default, which logs a notice at every save.
    caplog.set_level(logging.INFO)
    cfg = make_cfg(tmp_path, ["task=cls", *TINY, "trainer.max_epochs=1", "checkpoint_every_steps=3",
                              "checkpoint_every_minutes=null"])  # fmt: skip
    train(cfg)
    assert "`weights_only` was not set" not in caplog.text
