"""The AWD-LSTM regularisers (Merity et al. 2017) beyond weight drop: variational dropout
(one mask per sequence) and activation regularisation (AR, TAR), each against the model
run by hand with the same masks, or the loss written out."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F
from test_config_checks import with_value

from rnn_tasks.config_checks import validate_train_config
from rnn_tasks.errors import ConfigError
from rnn_tasks.models import LanguageModel, Tagger
from rnn_tasks.nn import RNN
from rnn_tasks.nn.dropout import LockedDropout, locked_dropout
from rnn_tasks.tasks import LanguageModelTask
from rnn_tasks.text import Vocab

pytestmark = pytest.mark.usefixtures("one_thread")  # tests/conftest.py

B, T, D, H, P = 4, 7, 5, 6, 0.4


# -- variational dropout -----------------------------------------------------------------


@pytest.mark.parametrize("time_dim", [1, 0], ids=["batch-first", "seq-first"])
def test_locked_dropout_keeps_one_mask_for_every_step(time_dim):
    torch.manual_seed(0)
    shape = (B, T, 50) if time_dim == 1 else (T, B, 50)
    out = locked_dropout(torch.ones(shape), P, time_dim=time_dim)
    first = out.select(time_dim, 0).unsqueeze(time_dim)
    assert torch.equal(out, first.expand_as(out))  # the same at every step
    torch.testing.assert_close(out.unique(), torch.tensor([0.0, 1 / (1 - P)]))
    assert 0.25 < (first == 0).float().mean() < 0.55  # ~P of the features, 400 draws
    x = torch.randn(shape)
    assert locked_dropout(x, P, training=False) is x
    assert locked_dropout(x, 0.0) is x


def test_a_single_step_gets_standard_dropout():
    torch.manual_seed(0)
    out = LockedDropout(P)(torch.ones(200, 30))
    assert not torch.equal(out[0], out[1])  # a mask per row, as nn.Dropout
    with pytest.raises(ValueError, match=r"dropout must be in \[0, 1\), got 1.0"):
        LockedDropout(1.0)


@pytest.mark.parametrize("bptt", ["manual", "autograd"])
@pytest.mark.parametrize("cell", ["elman", "lstm", "gru"])
def test_between_layers_one_mask_serves_every_step(cell, bptt):
    """A 2-layer network in training equals its layers run one by one with the mask applied
    by hand, drawn as the network draws it; standard dropout would not."""
    torch.manual_seed(0)
    net = RNN(D, H, 2, cell=cell, bptt=bptt, dropout=P, variational=True).train()
    lower, upper = RNN(D, H, cell=cell, bptt=bptt), RNN(H, H, cell=cell, bptt=bptt)
    lower.cells[0].load_state_dict(net.cells[0].state_dict())
    upper.cells[0].load_state_dict(net.cells[1].state_dict())
    x, lengths = torch.randn(B, T, D), torch.tensor([7, 3, 5, 1])
    torch.manual_seed(1)
    mask = locked_dropout(torch.ones(B, T, H), P)  # the network's one draw
    torch.manual_seed(1)
    out, _ = net(x, lengths)
    ref, _ = upper(lower(x, lengths)[0] * mask, lengths)
    torch.testing.assert_close(out, ref)
    assert "variational=True" in repr(net)


def test_standard_dropout_differs_from_the_locked_mask():
    """The check above can fail: a network drawing a mask per step does not match it."""
    torch.manual_seed(0)
    net = RNN(D, H, 2, cell="lstm", dropout=P).train()  # variational=False
    lower, upper = RNN(D, H, cell="lstm"), RNN(H, H, cell="lstm")
    lower.cells[0].load_state_dict(net.cells[0].state_dict())
    upper.cells[0].load_state_dict(net.cells[1].state_dict())
    x = torch.randn(B, T, D)
    torch.manual_seed(1)
    mask = locked_dropout(torch.ones(B, T, H), P)
    torch.manual_seed(1)
    out, _ = net(x)
    ref, _ = upper(lower(x)[0] * mask)
    assert not torch.allclose(out, ref)


def test_the_models_lock_their_embedding_and_output_dropout():
    lm = LanguageModel(20, H, H, num_layers=2, dropout=P, embedding_dropout=P,
                       output_dropout=P, variational_dropout=True)  # fmt: skip
    assert isinstance(lm.encoder.embedding_dropout, LockedDropout)
    assert isinstance(lm.output_dropout, LockedDropout)
    assert lm.encoder.rnn.variational
    tagger = Tagger(20, 5, output_dropout=P, embedding_dim=H, hidden_size=H,
                    embedding_dropout=P, variational_dropout=True)  # fmt: skip
    assert isinstance(tagger.output_dropout, LockedDropout)
    assert isinstance(tagger.encoder.embedding_dropout, LockedDropout)
    torch.manual_seed(0)
    _, _, (out, dropped) = lm.train().forward_with_outputs(torch.randint(0, 20, (B, T)))
    kept = dropped != 0
    assert torch.equal(kept, kept[:, :1].expand_as(kept))  # one mask along the sequence
    plain = LanguageModel(20, H, H, output_dropout=P)
    assert isinstance(plain.output_dropout, torch.nn.Dropout)


def test_variational_dropout_is_a_checked_model_option():
    validate_train_config(with_value("model.variational_dropout=true", base="task=lm"))
    with pytest.raises(ConfigError, match="model.variational_dropout must be"):
        validate_train_config(with_value("model.variational_dropout=0.5", base="task=lm"))


# -- activation regularisation ------------------------------------------------------------

WORDS = [f"w{i}" for i in range(30)]
VOCAB = Vocab(["<unk>", "<eos>", *WORDS], pad=None).to_dict()
MODEL = dict(type="rnn", cell="lstm", embedding_dim=H, hidden_size=H, output_dropout=P)


@pytest.mark.parametrize(("alpha", "beta"), [(2.0, 0.0), (0.0, 1.0), (2.0, 1.0)])
def test_ar_and_tar_add_their_penalties_to_the_training_loss(alpha, beta):
    torch.manual_seed(0)
    task = LanguageModelTask(VOCAB, MODEL, activation_reg=alpha, temporal_reg=beta).train()
    batch = {"input": torch.randint(0, 32, (B, T)), "target": torch.randint(0, 32, (B, T))}
    task.on_train_epoch_start()
    torch.manual_seed(1)
    loss = task._step(batch, "train")
    # By hand: the same forward pass (the same dropout mask), the penalties written out.
    torch.manual_seed(1)
    out, _ = task.model.encoder(batch["input"])
    dropped = task.model.output_dropout(out)
    logits = task.model.V(dropped)
    expected = (
        F.cross_entropy(logits.reshape(-1, 32), batch["target"].reshape(-1))
        + alpha * (dropped**2).mean()
        + beta * ((out[:, 1:] - out[:, :-1]) ** 2).mean()
    )
    torch.testing.assert_close(loss, expected)
    assert not torch.allclose(
        loss, F.cross_entropy(logits.reshape(-1, 32), batch["target"].reshape(-1))
    )
    loss.backward()  # differentiable through both penalties
    # The perplexity counts the cross-entropy alone.
    torch.testing.assert_close(
        task.nll["train_nll"].compute(),
        F.cross_entropy(logits.reshape(-1, 32), batch["target"].reshape(-1)),
    )


def test_validation_adds_no_penalty():
    torch.manual_seed(0)
    task = LanguageModelTask(VOCAB, MODEL, activation_reg=2.0, temporal_reg=1.0).eval()
    batch = {"input": torch.randint(0, 32, (B, T)), "target": torch.randint(0, 32, (B, T))}
    task.on_validation_epoch_start()
    with torch.no_grad():
        loss = task._step(batch, "val")
        logits, _ = task.model(batch["input"])
    torch.testing.assert_close(
        loss, F.cross_entropy(logits.reshape(-1, 32), batch["target"].reshape(-1))
    )


def test_ar_tar_are_refused_where_they_cannot_act():
    ffnn = dict(type="ffnn", context=2, embedding_dim=4, hidden_size=8)
    with pytest.raises(ValueError, match="model.type='ffnn' has none"):
        LanguageModelTask(VOCAB, ffnn, activation_reg=2.0)
    with pytest.raises(ValueError, match="temporal_reg must be >= 0, got -1"):
        LanguageModelTask(VOCAB, MODEL, temporal_reg=-1)
    validate_train_config(with_value("task.activation_reg=2", base="task=lm"))
    with pytest.raises(ConfigError, match="task.activation_reg must be"):
        validate_train_config(with_value("task.activation_reg=-2", base="task=lm"))


def test_nt_asgd_is_checked_and_exclusive_of_the_moving_average():
    validate_train_config(with_value("nt_asgd=5", base="task=lm"))
    with pytest.raises(ConfigError, match=r"nt_asgd must be null or a whole number >= 1"):
        validate_train_config(with_value("nt_asgd=0", base="task=lm"))
    both = with_value("nt_asgd=5", base="task=lm")
    both.ema_decay = 0.99
    with pytest.raises(ConfigError, match="set one of them"):
        validate_train_config(both)
