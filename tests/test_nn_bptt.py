"""The hand-written backward passes are the derivatives of their forward passes.

`gradcheck` compares each `autograd.Function` of `rnn_tasks.nn.bptt` (and a whole `RNN`
using them) with finite differences in float64; the two `bptt` modes of `unroll` and of
`RNN` give the same values and gradients.
"""

from __future__ import annotations

import pytest
import torch
from torch.autograd import gradcheck
from torch.func import functional_call

from rnn_tasks.nn import RNN, unroll
from rnn_tasks.nn.bptt import GRUBPTT, LSTMBPTT, ElmanBPTT
from rnn_tasks.nn.cells import ElmanCell, GRUCell, LSTMCell

T, B, D, H = 4, 3, 2, 3
LENGTHS = [4, 1, 2]  # one full row, one of a single step, one in between


pytestmark = pytest.mark.usefixtures("one_thread")  # tests/conftest.py


def mask_for(lengths, T):
    return (torch.arange(T).unsqueeze(1) < torch.tensor(lengths)).unsqueeze(-1)  # (T, B, 1)


def rand(*shape, requires_grad=True):
    return torch.randn(*shape, dtype=torch.float64, requires_grad=requires_grad)


masks = pytest.mark.parametrize("masked", [False, True], ids=["full", "masked"])
directions = pytest.mark.parametrize("reverse", [False, True], ids=["forward", "reverse"])
layouts = pytest.mark.parametrize("layout", ["time-major", "batch-first"])


def weights(G, layout):
    """x (T, B, D), W (G*H, D), b (G*H,), U (G*H, H), all float64 and requiring grad.

    `x` is time-major in memory or, as `RNN` passes it, a batch-first batch seen time-major.
    """
    x = rand(T, B, D) if layout == "time-major" else rand(B, T, D).transpose(0, 1).detach()
    return x.requires_grad_(), rand(G * H, D), rand(G * H), rand(G * H, H)


@layouts
@masks
@directions
@pytest.mark.parametrize("relu", [False, True], ids=["tanh", "relu"])
def test_elman_bptt_gradcheck(masked, reverse, relu, layout):
    torch.manual_seed(0)
    mask = mask_for(LENGTHS, T) if masked else None
    inputs = (*weights(1, layout), rand(B, H))
    assert gradcheck(lambda *a: ElmanBPTT.apply(*a, mask, reverse, relu), inputs)


@layouts
@masks
@directions
def test_lstm_bptt_gradcheck(masked, reverse, layout):
    torch.manual_seed(0)
    mask = mask_for(LENGTHS, T) if masked else None
    inputs = (*weights(4, layout), rand(B, H), rand(B, H))
    assert gradcheck(lambda *a: LSTMBPTT.apply(*a, mask, reverse), inputs)


@layouts
@masks
@directions
def test_gru_bptt_gradcheck(masked, reverse, layout):
    torch.manual_seed(0)
    mask = mask_for(LENGTHS, T) if masked else None
    inputs = (*weights(3, layout), rand(H), rand(B, H))
    assert gradcheck(lambda *a: GRUBPTT.apply(*a, mask, reverse), inputs)


@masks
@pytest.mark.parametrize("bidirectional", [False, True], ids=["uni", "bi"])
@pytest.mark.parametrize("cell", ["elman", "lstm", "gru"])
def test_rnn_gradcheck(cell, bidirectional, masked):
    """Through the whole network: inputs, initial state and every parameter."""
    torch.manual_seed(0)
    T, D, H, L = 3, 2, 2, 2  # smaller still: gradcheck costs two passes per input entry
    rnn = RNN(D, H, L, cell=cell, bidirectional=bidirectional).double()
    names = [n for n, _ in rnn.named_parameters()]
    params = [p.detach().clone().requires_grad_() for p in rnn.parameters()]
    lengths = [3, 1, 2] if masked else None
    rows = L * rnn.num_directions
    x, h0, c0 = rand(B, T, D), rand(rows, B, H), rand(rows, B, H)

    def f(x, h0, c0, *params):
        state = (h0, c0) if cell == "lstm" else h0
        weights = dict(zip(names, params, strict=True))
        out, state = functional_call(rnn, weights, (x, lengths, state))
        return out, *(state if cell == "lstm" else (state,))

    inputs = (x, h0, c0 if cell == "lstm" else c0.detach(), *params)
    assert gradcheck(f, inputs)


@pytest.mark.parametrize("reverse", [False, True], ids=["forward", "reverse"])
@pytest.mark.parametrize("masked", [False, True], ids=["full", "masked"])
@pytest.mark.parametrize(
    "make",
    [
        lambda: ElmanCell(5, H, "tanh"),
        lambda: ElmanCell(5, H, "relu"),
        lambda: LSTMCell(5, H),
        lambda: GRUCell(5, H),
    ],
    ids=["elman-tanh", "elman-relu", "lstm", "gru"],
)
def test_unroll_modes_agree(make, masked, reverse):
    """`unroll(bptt="manual")` equals the autograd loop over `cell.recur`, values and grads."""
    torch.manual_seed(0)
    cell = make().double()
    T_, B_ = 7, 13
    mask = mask_for([7, 1, 3, 7, 2, 5, 6, 4, 7, 1, 3, 2, 6], T_) if masked else None
    x = torch.randn(T_, B_, 5, dtype=torch.float64)
    s0 = [torch.randn(B_, H, dtype=torch.float64) for _ in range(2)]
    results = []
    for bptt in ("manual", "autograd"):
        cell.zero_grad()
        xs = x.clone().requires_grad_()
        ss = [s.clone().requires_grad_() for s in s0]
        state = tuple(ss) if isinstance(cell, LSTMCell) else ss[0]
        S, final = unroll(cell, xs, state, mask, reverse, bptt)
        finals = final if isinstance(final, tuple) else (final,)
        loss = (S * torch.linspace(-1, 1, S.numel()).view_as(S)).sum()
        loss = loss + sum((f * (i + 2)).sum() for i, f in enumerate(finals))
        loss.backward()
        grads = [xs.grad, *(s.grad for s in ss if s.grad is not None)]
        grads += [p.grad.clone() for p in cell.parameters()]
        results.append((S, *finals, *grads))
    for a, b in zip(*results, strict=True):
        torch.testing.assert_close(a, b, atol=1e-12, rtol=1e-12)


@pytest.mark.parametrize("cell", ["elman", "lstm", "gru"])
def test_rnn_bptt_modes_agree(cell):
    """Same weights, the two modes: same outputs, states and parameter gradients."""
    torch.manual_seed(0)
    manual = RNN(5, H, 2, cell=cell, bidirectional=True).double()
    auto = RNN(5, H, 2, cell=cell, bidirectional=True, bptt="autograd").double()
    auto.load_state_dict(manual.state_dict())
    x = torch.randn(13, 7, 5, dtype=torch.float64)
    lengths = [7, 1, 3, 7, 2, 5, 6, 4, 7, 1, 3, 2, 6]
    outs = []
    for rnn in (manual, auto):
        out, state = rnn(x, lengths)
        states = state if isinstance(state, tuple) else (state,)
        (out.pow(2).sum() + sum(s.sum() for s in states)).backward()
        outs.append((out, *states, *(p.grad for p in rnn.parameters())))
    for a, b in zip(*outs, strict=True):
        torch.testing.assert_close(a, b, atol=1e-12, rtol=1e-12)
