"""The training callbacks against exact references (a tiny model, plain SGD)."""

from types import SimpleNamespace

import lightning as L
import pytest
import torch
from torch.utils.data import DataLoader, TensorDataset

from rnn_tasks.callbacks import EpochProfile, RunCheckpoint, TriggeredAverage, WeightAverage


class Regression(L.LightningModule):
    def __init__(self) -> None:
        super().__init__()
        self.linear = torch.nn.Linear(3, 1)

    def training_step(self, batch, batch_idx):
        x, y = batch
        return torch.nn.functional.mse_loss(self.linear(x), y)

    def configure_optimizers(self):
        return torch.optim.SGD(self.parameters(), lr=0.1)


class RecordWeights(L.Callback):
    """The raw weights after every optimiser step."""

    def __init__(self) -> None:
        self.steps: list[torch.Tensor] = []

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx) -> None:
        self.steps.append(pl_module.linear.weight.detach().clone())


def test_weight_average_is_the_exponential_moving_average_of_the_steps():
    torch.manual_seed(0)
    data = TensorDataset(torch.randn(20, 3), torch.randn(20, 1))
    model, record, decay = Regression(), RecordWeights(), 0.6
    trainer = L.Trainer(
        max_epochs=1,
        callbacks=[record, WeightAverage(decay)],
        logger=False,
        enable_checkpointing=False,
        enable_progress_bar=False,
        enable_model_summary=False,
    )
    trainer.fit(model, DataLoader(data, batch_size=4))
    expected = record.steps[0]  # the first update copies the weights
    for w in record.steps[1:]:
        expected = decay * expected + (1 - decay) * w
    assert len(record.steps) == 5
    assert not torch.allclose(expected, record.steps[-1])
    torch.testing.assert_close(model.linear.weight, expected)  # training ends on the average


@pytest.mark.parametrize("decay", [0.0, 1.0, -0.5])
def test_weight_average_rejects_a_decay_outside_0_1(decay):
    with pytest.raises(ValueError, match="decay must be in"):
        WeightAverage(decay)


@pytest.mark.parametrize("stage", ["fit", "test"])
def test_run_checkpoint_carries_a_record_into_a_new_folder_only_when_fitting(tmp_path, stage):
    old, new = tmp_path / "old", tmp_path / "new"
    old.mkdir()
    (old / "best.ckpt").write_text("old best")
    new.mkdir()
    (new / "best.ckpt").write_text("new best")  # what the resumed run has saved since
    callback = RunCheckpoint(dirpath=new, filename="best", monitor="val/acc", mode="max")
    callback.setup(L.Trainer(logger=False), Regression(), stage)
    score = torch.tensor(0.75)
    callback.load_state_dict({
        "monitor": "val/acc", "best_model_score": score, "best_model_path": str(old / "best.ckpt"),
        "dirpath": str(old), "best_k_models": {str(old / "best.ckpt"): score},
        "kth_best_model_path": str(old / "best.ckpt"), "kth_value": score, "last_model_path": "",
    })  # fmt: skip
    if stage == "fit":  # a resume: the old best is copied over and is the record from now on
        assert (new / "best.ckpt").read_text() == "old best"
        assert callback.best_model_path == str(new / "best.ckpt")
        assert callback.best_model_score == score
        assert callback.best_k_models == {str(new / "best.ckpt"): score}
    else:  # testing a checkpoint after training leaves the files and the record alone
        assert (new / "best.ckpt").read_text() == "new best"
        assert callback.best_model_score is None


def test_run_checkpoint_starts_afresh_when_the_old_files_are_gone(tmp_path, caplog):
    callback = RunCheckpoint(dirpath=tmp_path / "new", filename="best", monitor="val/acc")
    callback.setup(L.Trainer(logger=False), Regression(), "fit")
    gone = str(tmp_path / "old" / "best.ckpt")
    with caplog.at_level("WARNING", logger="rnn_tasks.callbacks"):
        callback.load_state_dict({
            "monitor": "val/acc", "best_model_score": torch.tensor(0.9), "best_model_path": gone,
            "dirpath": str(tmp_path / "old"), "best_k_models": {gone: torch.tensor(0.9)},
            "kth_best_model_path": gone, "kth_value": torch.tensor(0.9), "last_model_path": "",
        })  # fmt: skip
    # A record of a file that is not there would make the test after training fail.
    assert callback.best_model_score is None and callback.best_model_path == ""
    assert "are gone, so its best score is not carried over" in caplog.text


def test_run_checkpoint_follows_the_first_process_on_whether_the_old_files_are_there(tmp_path):
    """Under DDP without a shared filesystem, another process may not see the old run's
    files; it must keep the same record as the first process, which copies them."""
    old = tmp_path / "old"
    old.mkdir()
    (old / "best.ckpt").write_text("old best")
    trainer = L.Trainer(logger=False)
    callback = RunCheckpoint(dirpath=tmp_path / "new", filename="best", monitor="val/acc")
    callback.setup(trainer, Regression(), "fit")
    seen = []

    def broadcast(obj, src=0):  # rank zero's answer, as torch.distributed would give it
        seen.append(obj)
        return not obj

    trainer.strategy.broadcast = broadcast
    callback.load_state_dict({
        "monitor": "val/acc", "best_model_score": torch.tensor(0.9),
        "best_model_path": str(old / "best.ckpt"), "dirpath": str(old),
        "best_k_models": {str(old / "best.ckpt"): torch.tensor(0.9)},
        "kth_best_model_path": str(old / "best.ckpt"), "kth_value": torch.tensor(0.9),
        "last_model_path": "",
    })  # fmt: skip
    assert seen == [True]  # this process sees the files, rank zero says they are gone
    assert callback.best_model_score is None and callback.best_model_path == ""


@pytest.mark.parametrize("where", ["beside", "recorded"])
def test_run_checkpoint_finds_the_old_files_beside_the_resumed_one_or_where_recorded(
    tmp_path, where
):
    """A run folder moved elsewhere has its files beside the checkpoint resumed from; a
    `last.ckpt` taken out alone leaves them where the run recorded them."""
    recorded, moved = tmp_path / "recorded", tmp_path / "moved"
    folder = moved if where == "beside" else recorded
    folder.mkdir()
    (folder / "best.ckpt").write_text(f"best in {where}")
    (tmp_path / "alone").mkdir()
    resumed = (moved if where == "beside" else tmp_path / "alone") / "last.ckpt"
    resumed.write_text("last")
    trainer = L.Trainer(logger=False)
    callback = RunCheckpoint(dirpath=tmp_path / "new", filename="best", monitor="val/acc")
    callback.setup(trainer, Regression(), "fit")
    trainer._checkpoint_connector._ckpt_path = str(resumed)  # as Lightning sets it to resume
    score = torch.tensor(0.9)
    callback.load_state_dict({
        "monitor": "val/acc", "best_model_score": score,
        "best_model_path": str(recorded / "best.ckpt"), "dirpath": str(recorded),
        "best_k_models": {str(recorded / "best.ckpt"): score},
        "kth_best_model_path": str(recorded / "best.ckpt"), "kth_value": score,
        "last_model_path": "",
    })  # fmt: skip
    assert callback.best_model_score == score
    assert (tmp_path / "new" / "best.ckpt").read_text() == f"best in {where}"


class Validated(Regression):
    """Logs, as its validation loss, the next figure of a given sequence."""

    def __init__(self, losses: list[float]) -> None:
        super().__init__()
        self.losses = iter(losses)
        self.validated: list[torch.Tensor] = []  # the weights each validation ran

    def validation_step(self, batch, batch_idx):
        if batch_idx == 0 and not self.trainer.sanity_checking:
            self.validated.append(self.linear.weight.detach().clone())

    def on_validation_epoch_end(self) -> None:
        if not self.trainer.sanity_checking:
            self.log("val/loss", next(self.losses))


def fit_triggered(losses, nonmono, callbacks=(), **trainer):
    torch.manual_seed(0)
    data = DataLoader(TensorDataset(torch.randn(12, 3), torch.randn(12, 1)), batch_size=4)
    model, record = Validated(losses), RecordWeights()
    average = TriggeredAverage(nonmono)
    trainer = L.Trainer(
        max_epochs=trainer.pop("max_epochs", len(losses)),
        callbacks=[record, average, *callbacks],
        logger=False,
        enable_checkpointing=bool(callbacks),
        enable_progress_bar=False,
        enable_model_summary=False,
        num_sanity_val_steps=0,
        **trainer,
    )
    trainer.fit(model, data, data)
    return model, record, average


def test_triggered_average_starts_when_the_loss_is_worse_than_the_best_long_ago():
    # Validations 0-5: 5, 4, 4.5, 4.2, 4.1, 4.0 with nonmono 2. At validation 3 the ones
    # before the last two are [5]: 4.2 is better. At validation 4 they are [5, 4]: 4.1 is
    # worse than 4, so averaging starts after epoch 4's 3 steps (15 in all).
    model, record, average = fit_triggered([5.0, 4.0, 4.5, 4.2, 4.1, 4.0], nonmono=2)
    assert average.started_at == 15
    # The uniform mean of the weights at the trigger and after every later step.
    expected = torch.stack(record.steps[14:]).mean(0)
    assert len(record.steps) == 18
    torch.testing.assert_close(model.linear.weight, expected)  # training ends on the mean
    assert not torch.allclose(expected, record.steps[-1])
    # Validation ran the raw weights up to the trigger, then the mean.
    torch.testing.assert_close(model.validated[4], record.steps[14])
    torch.testing.assert_close(model.validated[5], expected)


def test_triggered_average_changes_nothing_until_it_fires():
    model, record, average = fit_triggered([5.0, 4.0, 3.5, 3.0], nonmono=1)
    assert average.started_at is None
    torch.testing.assert_close(model.linear.weight, record.steps[-1])


def test_triggered_average_reads_max_mode_figures_the_other_way():
    average = TriggeredAverage(1, "val/acc", "max")
    assert average.sign == -1.0
    with pytest.raises(ValueError, match="nonmono must be a whole number"):
        TriggeredAverage(0)


def test_triggered_average_resumes_to_the_uninterrupted_result(tmp_path):
    from lightning.pytorch.callbacks import ModelCheckpoint

    losses = [5.0, 4.0, 4.5, 4.2, 4.1, 4.0, 3.9]
    whole, _, _ = fit_triggered(losses, nonmono=2)
    saved = ModelCheckpoint(tmp_path, filename="last", save_on_train_epoch_end=True)
    first, _, average = fit_triggered(losses[:5], nonmono=2, callbacks=[saved], max_epochs=5)
    checkpoint = torch.load(tmp_path / "last.ckpt", weights_only=True)
    assert average.started_at == 15
    # The checkpoint's model is the average (one update: the weights at the trigger); the
    # raw weights ride along to resume from.
    assert "current_model_state" in checkpoint
    torch.manual_seed(0)
    data = DataLoader(TensorDataset(torch.randn(12, 3), torch.randn(12, 1)), batch_size=4)
    resumed, resumed_average = Validated(losses[5:]), TriggeredAverage(2)
    L.Trainer(
        max_epochs=len(losses),
        callbacks=[resumed_average],
        logger=False,
        enable_checkpointing=False,
        enable_progress_bar=False,
        enable_model_summary=False,
        num_sanity_val_steps=0,
    ).fit(resumed, data, data, ckpt_path=tmp_path / "last.ckpt")
    assert (resumed_average.started_at, resumed_average.history) == (15, average.history)
    torch.testing.assert_close(resumed.linear.weight, whole.linear.weight, rtol=0, atol=0)


def test_the_epoch_profile_sums_the_tokens_of_every_process_on_their_device():
    # nccl reduces only tensors on the GPU: the count must be on the module's device
    # ("meta" here stands for a device that is not the CPU).
    seen = []

    def reduce(tensor, reduce_op):
        seen.append((tensor.device, reduce_op))
        return torch.tensor(300.0)

    strategy = SimpleNamespace(reduce=reduce, root_device=torch.device("cpu"))
    trainer = SimpleNamespace(world_size=2, strategy=strategy)
    logged = {}
    module = SimpleNamespace(device=torch.device("meta"), log_dict=logged.update)
    profile = EpochProfile()
    profile.on_train_epoch_start(trainer, module)
    profile.tokens, profile.last_end = 100, profile.epoch_start + 2.0
    profile.on_train_epoch_end(trainer, module)
    assert seen == [(torch.device("meta"), "sum")]
    assert logged["perf/tokens_per_s"] == pytest.approx(300 / 2.0)


def test_on_a_gpu_the_epoch_profile_waits_for_the_device_only_on_sampled_steps(monkeypatch):
    """Waiting for the GPU at every step would stall the queue: only every CUDA_SAMPLE-th
    step is timed (never the first, which records graphs), and its shares are its own."""
    waits = []
    monkeypatch.setattr(torch.cuda, "synchronize", lambda: waits.append(len(waits)))
    clock = iter(range(10_000))
    monkeypatch.setattr("rnn_tasks.callbacks.time.perf_counter", lambda: float(next(clock)))
    strategy = SimpleNamespace(root_device=torch.device("cuda"))
    trainer = SimpleNamespace(world_size=1, strategy=strategy)
    logged = {}
    module = SimpleNamespace(device=torch.device("cpu"), log_dict=logged.update)
    profile = EpochProfile()
    profile.on_train_epoch_start(trainer, module)
    batch = {"target": torch.zeros(2, 5)}
    for i in range(45):
        profile.on_train_batch_start(trainer, module, batch, i)
        profile.on_before_backward(trainer, module, None)
        profile.on_after_backward(trainer, module)
        profile.on_train_batch_end(trainer, module, None, batch, i)
    profile.on_train_epoch_end(trainer, module)
    assert EpochProfile.CUDA_SAMPLE == 20 and profile.timed_steps == 2
    # the epoch's start, the 4 hooks of each timed step and the end of the step before it
    assert len(waits) == 1 + 2 * (4 + 1)
    # each hook reads the clock once: a timed step spans 4 ticks from the step before's end,
    # one each for the wait for its batch, forward, backward and the optimizer
    assert logged["perf/outside_share"] == pytest.approx(1 - 2 / 4)
    assert logged["perf/optimizer_share"] == pytest.approx(1 / 4)
    assert logged["perf/tokens_per_s"] == pytest.approx(45 * 10 / (45 * 4))
