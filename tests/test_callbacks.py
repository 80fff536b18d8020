"""The training callbacks against exact references (a tiny model, plain SGD)."""

import lightning as L
import pytest
import torch
from torch.utils.data import DataLoader, TensorDataset

from rnn_tasks.callbacks import WeightAverage


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
