"""The training callbacks against exact references (a tiny model, plain SGD)."""

import lightning as L
import pytest
import torch
from torch.utils.data import DataLoader, TensorDataset

from rnn_tasks.callbacks import RunCheckpoint, WeightAverage


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
