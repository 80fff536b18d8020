"""Data-parallel training (DDP, 2 CPU processes over gloo) against one process, for every
task: the same batches divided among the processes, the same weights, the same validation
and test figures; for the language model, its windows in order and a resume that ends
where the uninterrupted run ends."""

import json
import re
import signal
import subprocess
import sys

import pytest
import torch
from test_reliability import ROOT, run_to_end, stop_after_first_checkpoint, weights

from rnn_tasks.data.order import ProcessBatches
from rnn_tasks.data.windows import BPTTWindows

# No dropout: a process draws masks for its own rows, which one process draws otherwise.
# SGD: Adam divides by the root of tiny second moments, which magnifies rounding apart.
LM = ["task=lm", "data.max_lines=300", "data.batch_size=4", "data.eval_batch_size=4",
      "data.bptt=10", "model.embedding_dim=16", "model.hidden_size=16", "threads=1",
      "optimizer=sgd", "task.lr=1.0", "trainer.max_epochs=2", "checkpoint_every_steps=3",
      "trainer.enable_progress_bar=false", "trainer.accelerator=cpu"]  # fmt: skip
DDP = ["trainer.strategy=ddp", "trainer.devices=2"]


def train(out, *extra) -> list[str]:
    return [sys.executable, str(ROOT / "scripts" / "train.py"), *LM, f"hydra.run.dir={out}",
            *extra]  # fmt: skip


def summary(out) -> dict:
    return json.loads((out / "metrics.json").read_text())


def evaluate_alone(ckpt: str) -> dict:
    """`scripts/evaluate.py` on one process: the checkpoint's test metrics."""
    proc = subprocess.run([sys.executable, str(ROOT / "scripts" / "evaluate.py"),
                           f"ckpt_path={ckpt}", "threads=1"], capture_output=True, text=True,
                          cwd=ROOT, timeout=300)  # fmt: skip
    assert proc.returncode == 0, proc.stderr[-2000:]
    return json.loads(proc.stdout)


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    one, two = tmp_path_factory.mktemp("one"), tmp_path_factory.mktemp("two")
    run_to_end(train(one))
    console = run_to_end(train(two, *DDP))
    (two / "console.txt").write_text(console.stdout + console.stderr)
    return one, two


def test_the_first_process_speaks_for_all_on_the_console(runs):
    one, two = runs
    console = (two / "console.txt").read_text()
    assert console.count("LanguageModelTask: ") == 1, console[-3000:]
    assert "[rank: 1]" not in console, console[-3000:]
    # The second process's own log file still has everything.
    assert "LanguageModelTask: " in (two / "train_ddp_process_1.log").read_text()


def test_the_processes_divide_each_window_by_rows_in_the_texts_order():
    stream = torch.arange(103)
    whole = BPTTWindows(stream, 4, 5)
    parts = [BPTTWindows(stream, 4, 5, part=(rank, 2)) for rank in range(2)]
    assert all(len(p) == len(whole) for p in parts)
    for k in range(len(whole)):  # window k of each process: its rows of window k
        for key in ("input", "target"):
            joined = torch.cat([p[k][key] for p in parts])
            assert torch.equal(joined, whole[k][key])
    # Each process's rows read on from window to window, as running text.
    rows = torch.cat([parts[1][k]["input"] for k in range(len(whole))], 1)
    assert torch.equal(rows[:, 1:] - rows[:, :-1], torch.ones_like(rows[:, 1:]))
    with pytest.raises(ValueError, match="5 rows cannot be divided among 2 processes"):
        BPTTWindows(stream, 5, 5, part=(0, 2))


def test_two_processes_train_the_weights_one_process_trains(runs):
    one, two = runs
    assert summary(two)["processes"] == 2 and summary(one)["processes"] == 1
    ours, theirs = (
        weights(two / "checkpoints" / "last.ckpt"),
        weights(one / "checkpoints" / "last.ckpt"),
    )
    for key in ours:  # every step's gradient: the mean over the same B rows, summed apart
        torch.testing.assert_close(ours[key], theirs[key], rtol=1e-4, atol=1e-5)
    metrics_one, metrics_two = summary(one)["metrics"], summary(two)["metrics"]
    for key in ("train/ppl", "val/ppl", "test/ppl", "val/loss", "test/loss"):
        assert metrics_two[key] == pytest.approx(metrics_one[key], rel=1e-4), key


def test_validation_and_test_under_ddp_are_the_whole_splits_figures(runs):
    """The 2-process test of a checkpoint equals one process's test of that checkpoint:
    every row counted once, the perplexity weighted by tokens across the processes."""
    _, two = runs
    alone = evaluate_alone(summary(two)["best_checkpoint"])
    assert summary(two)["metrics"]["test/ppl"] == pytest.approx(alone["test/ppl"], rel=1e-6)


def test_a_ddp_run_stopped_mid_epoch_resumes_to_the_uninterrupted_result(runs, tmp_path):
    _, two = runs
    stopped = tmp_path / "stopped"
    proc = stop_after_first_checkpoint(train(stopped, *DDP), stopped, signal.SIGTERM)
    assert proc.returncode != 0
    said = [line for line in proc.stderr.read().splitlines() if line.startswith("stopped:")]
    assert len(said) == 1 and "train_ddp_process" not in said[0]  # the first's resume command
    state = torch.load(stopped / "checkpoints" / "last.ckpt", weights_only=True)["exact_resume"]
    assert state["batches_done"] > 0  # mid-epoch: each process's carried state is in it
    rng = [p["rng"]["torch"] for p in state["processes"]]
    assert not torch.equal(rng[0], rng[1])  # each process draws its own dropout masks
    carried = [p["epoch_state"]["carried"][0] for p in state["processes"]]
    assert [c.shape[1] for c in carried] == [2, 2]  # (layers, B / 2, H) each
    last = stopped / "checkpoints" / "last.ckpt"
    # Each process's own state is in it: it resumes exactly on two processes, not one.
    proc = subprocess.run(train(tmp_path / "alone", f"ckpt_path={last}"), capture_output=True,
                          text=True, cwd=ROOT, timeout=300)  # fmt: skip
    assert proc.returncode != 0
    assert "written by 2 training process(es); it resumes exactly on as many, not 1" in proc.stderr
    resumed = tmp_path / "resumed"
    run_to_end(train(resumed, *DDP, f"ckpt_path={last}"))
    for name in ("last.ckpt", "best.ckpt"):
        ours, theirs = weights(resumed / "checkpoints" / name), weights(two / "checkpoints" / name)
        for key in ours:
            assert torch.equal(ours[key], theirs[key]), f"{name}: {key}"
    assert summary(resumed)["metrics"]["test/ppl"] == summary(two)["metrics"]["test/ppl"]


def test_a_non_finite_loss_stops_every_process(tmp_path):
    out = tmp_path / "diverged"
    proc = subprocess.run(train(out, *DDP, "task.lr=1e30", "trainer.gradient_clip_val=null"),
                          capture_output=True, text=True, cwd=ROOT, timeout=300)  # fmt: skip
    assert proc.returncode != 0
    # Both processes stop (the command returns); the first says why, once.
    steps = re.findall(r"training stopped: the training loss is nan at step (\d+)", proc.stderr)
    assert len(steps) == 1, proc.stderr[-2000:]
    assert json.loads((out / "metrics.json").read_text())["status"] == "failed"


def test_the_processes_divide_each_batch_and_train_every_example_once():
    order = list(range(23))  # batches of 8: 8, 8, 7
    parts = [list(ProcessBatches(order, 8, rank, 2)) for rank in range(2)]
    assert (
        [len(p) for p in parts] == [3, 3] == [len(ProcessBatches(order, 8, r, 2)) for r in (0, 1)]
    )
    for k, whole in enumerate([order[:8], order[8:16], order[16:]]):
        assert parts[0][k] + parts[1][k] == whole  # batch k, in its order
    # A last batch of fewer examples than processes cannot give each one: it is left out.
    assert [len(list(ProcessBatches(range(17), 8, r, 2))) for r in (0, 1)] == [2, 2]
    with pytest.raises(ValueError, match="a batch of 7 cannot be divided among 2 processes"):
        ProcessBatches(order, 7, 0, 2)


# Adam's division by tiny second moments magnifies rounding; SGD keeps it at rounding.
ENCODER_TASKS = {
    "pos": ["task=pos", "model.char_embedding_dim=8"],
    "cls": ["task=cls", "model.max_pool=true"],
}
SMALL = ["model.embedding_dim=16", "model.hidden_size=16", "threads=1", "optimizer=sgd",
         "task.lr=0.5", "trainer.max_epochs=2", "data.batch_size=8",
         "trainer.enable_progress_bar=false", "trainer.accelerator=cpu"]  # fmt: skip


@pytest.fixture(scope="module")
def encoder_runs(tmp_path_factory):
    runs = {}

    def get(task: str):
        if task not in runs:
            one, two = tmp_path_factory.mktemp(f"{task}1"), tmp_path_factory.mktemp(f"{task}2")
            for out, extra in ((one, []), (two, DDP)):
                cmd = [sys.executable, str(ROOT / "scripts" / "train.py"), *ENCODER_TASKS[task],
                       *SMALL, *extra, f"hydra.run.dir={out}"]  # fmt: skip
                run_to_end(cmd)
            runs[task] = one, two
        return runs[task]

    return get


@pytest.mark.parametrize("task", sorted(ENCODER_TASKS))
def test_a_tagger_and_a_classifier_train_on_two_processes_as_on_one(task, encoder_runs):
    one, two = encoder_runs(task)
    assert summary(two)["processes"] == 2
    ours, theirs = (
        weights(two / "checkpoints" / "last.ckpt"),
        weights(one / "checkpoints" / "last.ckpt"),
    )
    for key in ours:  # each step: the mean over the batch's words, wherever they were read
        torch.testing.assert_close(ours[key], theirs[key], rtol=1e-4, atol=1e-5)
    metrics_one, metrics_two = summary(one)["metrics"], summary(two)["metrics"]
    assert metrics_two.keys() == metrics_one.keys()
    for key, value in metrics_one.items():
        # Every figure counted over every example once; not the last batch's own loss,
        # which each process logs for its part of the batch.
        if not key.startswith(("perf/", "lr-")) and key != "train/loss_step":
            assert metrics_two[key] == pytest.approx(value, rel=1e-4, abs=1e-6), key


@pytest.mark.parametrize("task", sorted(ENCODER_TASKS))
def test_the_first_process_draws_the_figures_from_the_whole_test_split(task, encoder_runs):
    one, two = encoder_runs(task)
    confusion = [json.loads((out / "confusion.json").read_text()) for out in (one, two)]
    assert confusion[0]["matrix"] == confusion[1]["matrix"]  # every test example, once
    assert (two / "learning_curves.png").is_file() and (two / "confusion_matrix.png").is_file()


def test_a_batch_that_does_not_divide_is_refused_before_the_processes_start():
    from test_config_checks import with_value

    from rnn_tasks.config_checks import validate_train_config
    from rnn_tasks.errors import ConfigError

    cfg = with_value("data.batch_size=5", base="task=pos")
    cfg.trainer.devices = 2
    with pytest.raises(ConfigError, match=r"data.batch_size=5 cannot be divided among 2 proc"):
        validate_train_config(cfg)
    cfg.data.batch_size = 6
    validate_train_config(cfg)  # a tagger's evaluation batches need not divide
    lm = with_value("data.eval_batch_size=5", base="task=lm")
    lm.trainer.devices = 2
    with pytest.raises(ConfigError, match=r"data.eval_batch_size=5 cannot be divided"):
        validate_train_config(lm)


@pytest.mark.parametrize("task", sorted(ENCODER_TASKS))
def test_their_test_under_ddp_is_one_processs_test_of_the_checkpoint(task, encoder_runs):
    _, two = encoder_runs(task)
    alone = evaluate_alone(summary(two)["best_checkpoint"])
    for key, value in alone.items():
        assert summary(two)["metrics"][key] == pytest.approx(value, rel=1e-6, abs=1e-7), key


@pytest.mark.parametrize(
    ("env", "first"),
    [({}, True), ({"LOCAL_RANK": "1"}, False), ({"NODE_RANK": "1", "LOCAL_RANK": "0"}, False),
     ({"RANK": "0", "LOCAL_RANK": "0"}, True), ({"RANK": "4", "LOCAL_RANK": "0"}, False),
     ({"SLURM_PROCID": "5", "SLURM_LOCALID": "0"}, False)],
)  # fmt: skip
def test_one_process_of_all_machines_locks_and_records_the_run(env, first, monkeypatch):
    """On a second machine, its local rank 0 must not take the shared folder's lock."""
    from rnn_tasks.train import first_process

    for name in ("RANK", "SLURM_PROCID", "NODE_RANK", "LOCAL_RANK"):
        monkeypatch.delenv(name, raising=False)
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    assert first_process() is first
