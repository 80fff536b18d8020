"""`RNN(weight_drop=p)`: DropConnect on the recurrent weights U (Merity et al. 2017), one mask
per forward call, checked against the same network run with the dropped matrices by hand."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from rnn_tasks.nn import RNN

pytestmark = pytest.mark.usefixtures("one_thread")  # tests/conftest.py

B, T, D, H, P = 4, 6, 5, 7, 0.4


def twins(cell: str, bptt: str = "manual", bidirectional: bool = False):
    torch.manual_seed(0)
    ours = RNN(D, H, 2, cell=cell, bidirectional=bidirectional, bptt=bptt, weight_drop=P)
    plain = RNN(D, H, 2, cell=cell, bidirectional=bidirectional, bptt=bptt)
    plain.load_state_dict(ours.state_dict())
    return ours, plain


@pytest.mark.parametrize("bptt", ["manual", "autograd"])
@pytest.mark.parametrize("bidirectional", [False, True], ids=["uni", "bi"])
@pytest.mark.parametrize("cell", ["elman", "lstm", "gru"])
def test_training_runs_every_step_with_one_dropped_copy_of_u(cell, bidirectional, bptt):
    ours, plain = twins(cell, bptt, bidirectional)
    x = torch.randn(B, T, D)
    lengths = torch.tensor([6, 2, 5, 1])
    torch.manual_seed(1)  # the masks our forward draws, cell by cell, in order
    dropped = [nn.functional.dropout(c.U, P, training=True).detach() for c in ours.cells]
    torch.manual_seed(1)
    x_ours, x_ref = x.clone().requires_grad_(), x.clone().requires_grad_()
    out, _ = ours.train()(x_ours, lengths)
    with torch.no_grad():
        for c, U in zip(plain.cells, dropped, strict=True):
            c.U.copy_(U)
    ref, _ = plain.train()(x_ref, lengths)
    torch.testing.assert_close(out, ref)
    out.square().sum().backward()
    ref.square().sum().backward()
    torch.testing.assert_close(x_ours.grad, x_ref.grad)
    for c, U, c_ref in zip(ours.cells, dropped, plain.cells, strict=True):
        kept = U != 0  # a dropped entry gets no gradient; a kept one gets it scaled
        assert torch.equal(c.U.grad[~kept], torch.zeros_like(c.U.grad[~kept]))
        torch.testing.assert_close(c.U.grad[kept], c_ref.U.grad[kept] / (1 - P))


@pytest.mark.parametrize("cell", ["elman", "lstm", "gru"])
def test_evaluation_and_generation_use_u_whole(cell):
    ours, plain = twins(cell)
    x = torch.randn(B, T, D)
    with torch.no_grad():
        assert torch.equal(ours.eval()(x)[0], plain.eval()(x)[0])
        assert torch.equal(ours.step(x[:, 0])[0], plain.step(x[:, 0])[0])
    assert "weight_drop=0.4" in repr(ours)


def test_weight_drop_out_of_range_is_refused():
    with pytest.raises(ValueError, match=r"weight_drop must be in \[0, 1\), got 1.0"):
        RNN(D, H, weight_drop=1.0)


def test_the_model_config_reaches_the_network_and_is_checked():
    from test_config_checks import with_value

    from rnn_tasks.config_checks import validate_train_config
    from rnn_tasks.errors import ConfigError
    from rnn_tasks.models import LanguageModel

    lm = LanguageModel(vocab_size=10, embedding_dim=4, hidden_size=4, weight_drop=0.3)
    assert lm.encoder.rnn.weight_drop == 0.3
    validate_train_config(with_value("model.weight_drop=0.5", base="task=lm"))
    with pytest.raises(ConfigError, match="model.weight_drop must be"):
        validate_train_config(with_value("model.weight_drop=1.5", base="task=lm"))
