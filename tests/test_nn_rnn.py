"""Behaviour of `rnn_tasks.nn.RNN` beyond equality with torch: padding, dropout, `step`,
argument checks and gradients reaching every parameter."""

from __future__ import annotations

import pytest
import torch

from rnn_tasks.nn import RNN

B, T, D, H = 13, 7, 5, 8
LENGTHS = [7, 1, 3, 7, 2, 5, 6, 4, 7, 1, 3, 2, 6]
CELLS = [("elman", "tanh"), ("elman", "relu"), ("lstm", "tanh"), ("gru", "tanh")]
CELL_IDS = ["elman-tanh", "elman-relu", "lstm", "gru"]
cells = pytest.mark.parametrize(("cell", "nonlinearity"), CELLS, ids=CELL_IDS)
directions = pytest.mark.parametrize("bidirectional", [False, True], ids=["uni", "bi"])


pytestmark = pytest.mark.usefixtures("one_thread")  # tests/conftest.py


def states(state) -> tuple[torch.Tensor, ...]:
    return state if isinstance(state, tuple) else (state,)


def make(cell, nonlinearity, **kwargs) -> RNN:
    return RNN(D, H, cell=cell, nonlinearity=nonlinearity, **kwargs).double()


# -- padding ----------------------------------------------------------------------------


@pytest.mark.parametrize("bptt", ["manual", "autograd", "no-grad"])
@pytest.mark.parametrize("num_layers", [1, 2])
@directions
@cells
def test_padding_invariance(cell, nonlinearity, bidirectional, num_layers, bptt):
    """Row i of a padded batch is row i run alone; padding's values never matter."""
    torch.manual_seed(0)
    grad = bptt != "no-grad"
    bptt = bptt if grad else "manual"
    rnn = make(cell, nonlinearity, num_layers=num_layers, bidirectional=bidirectional, bptt=bptt)
    T_pad = T + 2  # every row padded, the longest too
    x = torch.randn(B, T_pad, D, dtype=torch.float64)
    pad = torch.arange(T_pad).unsqueeze(0) >= torch.tensor(LENGTHS).unsqueeze(1)  # (B, T)
    x[pad] = 1e3  # garbage that would show if it leaked into any result
    x.requires_grad_(grad)
    with torch.set_grad_enabled(grad):
        out, state = rnn(x, LENGTHS)  # (B, T_pad, H*K)
    if grad:
        (out.sum() + sum(s.sum() for s in states(state))).backward()
        assert torch.equal(x.grad[pad], torch.zeros_like(x.grad[pad]))  # padding gets no error

    assert torch.equal(out[pad], torch.zeros_like(out[pad]))
    for i, n in enumerate(LENGTHS):
        with torch.set_grad_enabled(grad):
            alone_out, alone_state = rnn(x[i : i + 1, :n].detach())
        torch.testing.assert_close(out[i : i + 1, :n], alone_out, atol=1e-12, rtol=1e-12)
        for s, s_alone in zip(states(state), states(alone_state), strict=True):
            torch.testing.assert_close(s[:, i : i + 1], s_alone, atol=1e-12, rtol=1e-12)


@directions
@cells
def test_full_lengths_equal_no_lengths(cell, nonlinearity, bidirectional):
    torch.manual_seed(0)
    rnn = make(cell, nonlinearity, num_layers=2, bidirectional=bidirectional)
    x = torch.randn(B, T, D, dtype=torch.float64)
    out, state = rnn(x, [T] * B)
    out_none, state_none = rnn(x)
    torch.testing.assert_close(out, out_none, atol=0, rtol=0)
    for s, s_none in zip(states(state), states(state_none), strict=True):
        torch.testing.assert_close(s, s_none, atol=0, rtol=0)


# -- dropout ----------------------------------------------------------------------------


@pytest.mark.parametrize("cell", ["elman", "lstm", "gru"])
def test_single_layer_ignores_dropout(cell):
    """As in torch.nn.RNN, dropout sits between layers: one layer has none to drop."""
    torch.manual_seed(0)
    with pytest.warns(UserWarning, match="with num_layers=1 it does nothing"):
        rnn = RNN(D, H, 1, cell=cell, dropout=0.5, bidirectional=True).train()
    x = torch.randn(B, T, D)
    torch.manual_seed(1)
    out1, _ = rnn(x, LENGTHS)
    torch.manual_seed(2)
    out2, _ = rnn(x, LENGTHS)
    out_eval, _ = rnn.eval()(x, LENGTHS)
    torch.testing.assert_close(out1, out2, atol=0, rtol=0)
    torch.testing.assert_close(out1, out_eval, atol=0, rtol=0)


@directions
@pytest.mark.parametrize("cell", ["elman", "lstm", "gru"])
def test_dropout_between_layers_only(cell, bidirectional):
    """Train mode with two layers: the first layer's states are untouched, the top layer's
    output changes with the seed (and is reproducible for a seed); eval mode is the same
    network without dropout."""
    torch.manual_seed(0)
    rnn = RNN(D, H, 2, cell=cell, dropout=0.5, bidirectional=bidirectional)
    plain = RNN(D, H, 2, cell=cell, dropout=0.0, bidirectional=bidirectional)
    plain.load_state_dict(rnn.state_dict())
    x = torch.randn(B, T, D)
    K = rnn.num_directions

    ref_out, ref_state = plain(x, LENGTHS)
    eval_out, eval_state = rnn.eval()(x, LENGTHS)
    torch.testing.assert_close(eval_out, ref_out, atol=0, rtol=0)

    rnn.train()
    runs = []
    for seed in (1, 2, 1):
        torch.manual_seed(seed)
        runs.append(rnn(x, LENGTHS))
    (out1, st1), (out2, _), (out1_again, _) = runs
    for s, s_ref in zip(states(st1), states(ref_state), strict=True):
        torch.testing.assert_close(s[:K], s_ref[:K], atol=0, rtol=0)  # layer 0: no dropout
        assert not torch.allclose(s[K:], s_ref[K:])  # layer 1 read a dropped-out input
    assert not torch.allclose(out1, out2)
    torch.testing.assert_close(out1, out1_again, atol=0, rtol=0)


def test_dropout_acts_on_the_lower_layers_output():
    """Make layer 1 copy its input (relu(I x), no recurrence): its output must then be the
    layer-0 output with about half the entries zeroed and the rest doubled (p = 0.5)."""
    torch.manual_seed(0)
    rnn = RNN(D, H, 2, cell="elman", nonlinearity="relu", dropout=0.5)
    lower = RNN(D, H, 1, cell="elman", nonlinearity="relu")
    with torch.no_grad():
        c0, c1 = rnn.cells
        c0.U.zero_()
        c0.W.uniform_(0, 0.1)
        c0.b.uniform_(1, 2)  # x >= 0 below, so layer 0's output is positive everywhere
        c1.W.copy_(torch.eye(H))
        c1.U.zero_()
        c1.b.zero_()
        lower.cells[0].load_state_dict(c0.state_dict())
    x = torch.rand(64, T, D)
    lower_out, _ = lower(x)  # (64, T, H)
    assert (lower_out > 0).all()

    torch.manual_seed(3)
    out, _ = rnn.train()(x)
    ratio = out / lower_out
    dropped = ratio == 0
    torch.testing.assert_close(ratio[~dropped], torch.full_like(ratio[~dropped], 2.0))
    assert 0.4 < dropped.float().mean().item() < 0.6
    torch.testing.assert_close(rnn.eval()(x)[0], lower_out)


# -- step -------------------------------------------------------------------------------


@pytest.mark.parametrize("grad", [True, False], ids=["grad", "no-grad"])
@pytest.mark.parametrize("given_state", [False, True], ids=["zero-state", "given-state"])
@pytest.mark.parametrize("num_layers", [1, 2])
@cells
def test_step_reproduces_forward(cell, nonlinearity, num_layers, given_state, grad):
    """`step` as generation runs it (under no_grad) and as training would (with autograd)."""
    torch.manual_seed(0)
    rnn = make(cell, nonlinearity, num_layers=num_layers)
    x = torch.randn(B, T, D, dtype=torch.float64)
    state0 = None
    if given_state:
        s = [torch.randn(num_layers, B, H, dtype=torch.float64) for _ in range(2)]
        state0 = tuple(s) if cell == "lstm" else s[0]
    out, final = rnn(x, state=state0)
    state = state0
    for t in range(T):
        with torch.set_grad_enabled(grad):
            y, state = rnn.step(x[:, t], state)
        assert y.requires_grad == grad
        torch.testing.assert_close(y, out[:, t], atol=1e-12, rtol=1e-12)
    for s, s_ref in zip(states(state), states(final), strict=True):
        torch.testing.assert_close(s, s_ref, atol=1e-12, rtol=1e-12)


def test_step_refuses_bidirectional():
    rnn = RNN(D, H, bidirectional=True)
    with pytest.raises(ValueError, match="unidirectional"):
        rnn.step(torch.randn(B, D))


# -- argument checks --------------------------------------------------------------------


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"cell": "lstmm"}, r"cell must be one of \['elman', 'gru', 'lstm'\]"),
        ({"nonlinearity": "sigmoid"}, r"nonlinearity must be one of \['relu', 'tanh'\]"),
        ({"cell": "lstm", "nonlinearity": "relu"}, r"nonlinearity applies to cell='elman'"),
        ({"cell": "gru", "nonlinearity": "relu"}, r"nonlinearity applies to cell='elman'"),
        ({"num_layers": 0}, r"num_layers must be >= 1"),
        ({"dropout": -0.1}, r"dropout must be in \[0, 1\)"),
        ({"dropout": 1.0}, r"dropout must be in \[0, 1\)"),
        ({"bptt": "truncated"}, r"bptt must be one of \['manual', 'autograd'\]"),
    ],
)
def test_bad_constructor_arguments(kwargs, match):
    with pytest.raises(ValueError, match=match):
        RNN(D, H, **kwargs)


@pytest.mark.parametrize("cell", ["elman", "lstm", "gru"])
@pytest.mark.parametrize(
    ("call", "match"),
    [
        (lambda rnn, x, s: rnn(x[0]), r"x must be 3-D \(batch, time, features\)"),
        (lambda rnn, x, s: rnn(x[..., :-1]), rf"x has {D - 1} features .* input_size={D}"),
        (lambda rnn, x, s: rnn(x[:, :0]), r"x has no time steps"),
        (lambda rnn, x, s: rnn(x.double()), r"x is torch.float64 but the weights are torch.f"),
        (lambda rnn, x, s: rnn(x, [0] + [T] * (B - 1)), rf"lengths must lie in \[1, {T}\]"),
        (lambda rnn, x, s: rnn(x, [T + 1] + [T] * (B - 1)), rf"lengths must lie in \[1, {T}\]"),
        (lambda rnn, x, s: rnn(x, [T] * (B - 1)), rf"lengths must be {B} integers"),
        (lambda rnn, x, s: rnn(x, [[T]] * B), rf"lengths must be {B} integers"),
        (lambda rnn, x, s: rnn(x, [float(T)] * B), rf"lengths must be {B} integers"),
        (lambda rnn, x, s: rnn(x, torch.ones(B, dtype=torch.bool)), rf"lengths must be {B} int"),
        (lambda rnn, x, s: rnn(x, state=s(2, B - 1, H)), r"h_0 must have shape \(2, 13, 8\)"),
        (lambda rnn, x, s: rnn(x, state=s(1, B, H)), r"h_0 must have shape \(2, 13, 8\)"),
        (lambda rnn, x, s: rnn.step(x[:, 0, :-1]), rf"x_t must be \(batch, {D}\)"),
    ],
    ids=[
        "rank",
        "input-size",
        "empty-time",
        "dtype",
        "length-0",
        "length-over-T",
        "lengths-count",
        "lengths-rank",
        "lengths-float",
        "lengths-bool",
        "state-batch",
        "state-rows",
        "step-input-size",
    ],
)
def test_bad_call_arguments(cell, call, match):
    rnn = RNN(D, H, 2, cell=cell)
    x = torch.randn(B, T, D)

    def state_of_shape(*shape):  # in the cell's state layout
        h = torch.zeros(shape)
        return (h, torch.zeros_like(h)) if cell == "lstm" else h

    with pytest.raises(ValueError, match=match):
        call(rnn, x, state_of_shape)


def test_bad_lstm_state():
    rnn = RNN(D, H, 2, cell="lstm")
    x, h = torch.randn(B, T, D), torch.zeros(2, B, H)
    with pytest.raises(ValueError, match=r"pair \(h_0, c_0\)"):
        rnn(x, state=h)
    with pytest.raises(ValueError, match=r"c_0 must have shape \(2, 13, 8\)"):
        rnn(x, state=(h, h[:, :-1]))
    with pytest.raises(ValueError, match="one tensor h_0"):
        RNN(D, H, 2, cell="gru")(x, state=(h, h))


# -- gradients --------------------------------------------------------------------------


@pytest.mark.parametrize("bptt", ["manual", "autograd"])
@directions
@cells
def test_every_parameter_gets_a_finite_gradient(cell, nonlinearity, bidirectional, bptt):
    torch.manual_seed(0)
    rnn = RNN(D, H, 2, cell, nonlinearity, bidirectional, dropout=0.1, bptt=bptt)
    out, state = rnn(torch.randn(B, T, D), LENGTHS)
    (out.square().mean() + sum(s.square().mean() for s in states(state))).backward()
    for name, p in rnn.named_parameters():
        assert p.grad is not None, name
        assert torch.isfinite(p.grad).all(), name
        assert p.grad.abs().sum() > 0, name


@pytest.mark.parametrize("module", [torch.nn.RNN, torch.nn.LSTM, torch.nn.GRU])
def test_a_module_without_biases_stays_without_them(module):
    ours = RNN.from_torch(module(D, H, num_layers=2, bias=False, batch_first=True))
    biases = [p for name, p in ours.named_parameters() if name.rsplit(".", 1)[-1] in ("b", "b_hn")]
    assert biases and all(not p.requires_grad and not p.any() for p in biases)
    ours(torch.randn(B, T, D))[0].sum().backward()
    assert all(p.grad is None for p in biases)  # an optimiser leaves them at zero


@pytest.mark.parametrize("cell", ["elman", "lstm", "gru"])
@pytest.mark.parametrize("bptt", ["manual", "autograd"])
def test_unroll_computes_the_lectures_forward_rnn(cell, bptt):
    # forward_rnn is the definition (one cell call per step); unroll, the fast path,
    # must give the same states and the same gradients.
    from rnn_tasks.nn import forward_rnn, unroll

    torch.manual_seed(0)
    layer = RNN(5, 6, cell=cell, bptt=bptt).double()
    step = layer.cells[0]
    x = torch.randn(7, 3, 5, dtype=torch.double, requires_grad=True)
    h0 = torch.zeros(3, 6, dtype=torch.double)
    state = (h0, h0.clone()) if cell == "lstm" else h0
    ours, final = unroll(step, x, state, bptt=bptt)
    theirs, their_final = forward_rnn(step, x, state)
    torch.testing.assert_close(ours, theirs)
    torch.testing.assert_close(final, their_final)
    (g_ours,) = torch.autograd.grad(ours.square().sum(), x)
    (g_theirs,) = torch.autograd.grad(theirs.square().sum(), x)
    torch.testing.assert_close(g_ours, g_theirs)
