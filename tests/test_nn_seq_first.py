"""`rnn_tasks.nn.RNN(batch_first=False)` is a drop-in for torch's seq-first modules.

Code written for torch's default layout, x (T, B, D) -> output (T, B, H * K), such as
pytorch/examples' `word_language_model`, swaps in `RNN.from_torch(module)` unchanged. The
comparison follows `test_nn_torch_equivalence.py` (its helpers are reused): the same weights,
ragged batches packed for torch (`pack_padded_sequence(enforce_sorted=False)`) and padded
with `lengths` for ours, one random-probe loss over outputs and final states.
"""

from __future__ import annotations

import pytest
import torch
from test_nn_torch_equivalence import (
    KINDS,
    RAGGED,
    as_tuple,
    assert_equal_to,
    gradient_pairs,
    probe_loss,
)
from torch import Tensor, nn
from torch.nn.utils.rnn import pack_padded_sequence, pad_packed_sequence

from rnn_tasks.nn import RNN

B, T, D, H = 13, 7, 5, 8

pytestmark = pytest.mark.usefixtures("one_thread")  # tests/conftest.py


def run_torch_seq_first(module: nn.RNNBase, x: Tensor, lengths: Tensor | None, state):
    """torch's module on (T, B, D); a ragged batch goes in packed."""
    if lengths is None:
        return module(x, state)
    packed = pack_padded_sequence(x, lengths, batch_first=False, enforce_sorted=False)
    out, state = module(packed, state)
    out, _ = pad_packed_sequence(out, batch_first=False, total_length=x.shape[0])
    return out, state


def seq_first_input(dtype, ragged: bool, memory: str) -> tuple[Tensor, Tensor | None]:
    """(T, B, D) inputs, time-major in memory or a transposed view of batch-first memory;
    when ragged, the padding holds garbage that would show if it leaked anywhere."""
    x = torch.randn(T, B, D, dtype=dtype)
    lengths = torch.tensor(RAGGED) if ragged else None
    if ragged:
        pad = torch.arange(T).unsqueeze(1) >= lengths.unsqueeze(0)  # (T, B)
        x[pad] = 1e3
    if memory == "batch-major":
        x = x.transpose(0, 1).contiguous().transpose(0, 1)  # same values, (B, T, D) memory
        assert not x.is_contiguous()
    return x, lengths


def make_pair(kind: str, num_layers: int, bidirectional: bool, dtype, bptt="manual"):
    torch.manual_seed(0)
    cls, kwargs = KINDS[kind]
    theirs = cls(D, H, num_layers, bidirectional=bidirectional, **kwargs).to(dtype)
    assert not theirs.batch_first  # torch's default layout
    ours = RNN.from_torch(theirs, bptt=bptt)
    assert ours.batch_first is False
    return ours, theirs


def random_state(kind: str, num_layers: int, bidirectional: bool, dtype) -> list[Tensor]:
    rows = num_layers * (2 if bidirectional else 1)
    return [torch.randn(rows, B, H, dtype=dtype) for _ in range(2 if kind == "lstm" else 1)]


@pytest.mark.parametrize("memory", ["time-major", "batch-major"])
@pytest.mark.parametrize("bptt", ["manual", "autograd"])
@pytest.mark.parametrize("dtype", [torch.float64, torch.float32], ids=["f64", "f32"])
@pytest.mark.parametrize("with_state", [False, True], ids=["zero-state", "given-state"])
@pytest.mark.parametrize("ragged", [False, True], ids=["equal", "ragged"])
@pytest.mark.parametrize("bidirectional", [False, True], ids=["uni", "bi"])
@pytest.mark.parametrize("num_layers", [1, 2])
@pytest.mark.parametrize("kind", list(KINDS))
def test_seq_first_matches_torch(
    kind, num_layers, bidirectional, ragged, with_state, dtype, bptt, memory
):
    ours, theirs = make_pair(kind, num_layers, bidirectional, dtype, bptt)
    x, lengths = seq_first_input(dtype, ragged, memory)
    state0 = random_state(kind, num_layers, bidirectional, dtype)

    def leaf_inputs():
        xs = x.detach().clone().requires_grad_()  # clone keeps x's memory order
        s0 = [s.clone().requires_grad_() for s in state0]
        state = None if not with_state else (tuple(s0) if kind == "lstm" else s0[0])
        return xs, s0, state

    x_ours, s0_ours, state_ours = leaf_inputs()
    x_ref, s0_ref, state_ref = leaf_inputs()
    out, state = ours(x_ours, lengths, state_ours)
    out_ref, state_ref_n = run_torch_seq_first(theirs, x_ref, lengths, state_ref)

    assert out.shape == (T, B, H * ours.num_directions)
    assert_equal_to(out, out_ref, "output")
    for i, (s, s_ref) in enumerate(zip(as_tuple(state), as_tuple(state_ref_n), strict=True)):
        assert s.shape == s_ref.shape
        assert_equal_to(s, s_ref, ("h_n", "c_n")[i])

    probes = [torch.randn_like(p) for p in (out_ref, *as_tuple(state_ref_n))]
    probe_loss(out, state, probes).backward()
    probe_loss(out_ref, state_ref_n, probes).backward()

    assert_equal_to(x_ours.grad, x_ref.grad, "x.grad")  # zero on padding, as torch's
    if with_state:
        for i, (s, s_ref) in enumerate(zip(s0_ours, s0_ref, strict=True)):
            assert_equal_to(s.grad, s_ref.grad, ("h_0.grad", "c_0.grad")[i])
    for name, g, g_ref in gradient_pairs(ours, theirs):
        assert g is not None, name
        assert_equal_to(g, g_ref, f"{name}.grad")


@pytest.mark.parametrize("no_grad", [torch.no_grad, torch.inference_mode])
@pytest.mark.parametrize("dtype", [torch.float64, torch.float32], ids=["f64", "f32"])
@pytest.mark.parametrize("with_state", [False, True], ids=["zero-state", "given-state"])
@pytest.mark.parametrize("ragged", [False, True], ids=["equal", "ragged"])
@pytest.mark.parametrize("bidirectional", [False, True], ids=["uni", "bi"])
@pytest.mark.parametrize("num_layers", [1, 2])
@pytest.mark.parametrize("kind", list(KINDS))
def test_seq_first_matches_torch_without_grad(
    kind, num_layers, bidirectional, ragged, with_state, dtype, no_grad
):
    """Without autograd both directions write into one buffer: it must be time-major too."""
    ours, theirs = make_pair(kind, num_layers, bidirectional, dtype)
    x, lengths = seq_first_input(dtype, ragged, "time-major")
    state = None
    if with_state:
        s = random_state(kind, num_layers, bidirectional, dtype)
        state = tuple(s) if kind == "lstm" else s[0]
    with no_grad():
        out, final = ours(x, lengths, state)
        out_ref, final_ref = run_torch_seq_first(theirs, x, lengths, state)
    assert not out.requires_grad
    assert out.shape == (T, B, H * ours.num_directions)
    # Time-major input, time-major output: nothing was laid out batch-first on the way.
    assert out.is_contiguous(), out.stride()
    assert_equal_to(out, out_ref, "output")
    for i, (s, s_ref) in enumerate(zip(as_tuple(final), as_tuple(final_ref), strict=True)):
        assert_equal_to(s, s_ref, ("h_n", "c_n")[i])


@pytest.mark.parametrize("kind", list(KINDS))
def test_from_torch_keeps_the_layout(kind):
    cls, kwargs = KINDS[kind]
    assert RNN.from_torch(cls(D, H, **kwargs)).batch_first is False
    ours = RNN.from_torch(cls(D, H, batch_first=True, **kwargs))
    assert ours.batch_first is True
    assert "batch_first=True" in repr(ours)
    assert RNN(D, H).batch_first is True  # our default stays batch-first
    assert "batch_first=False" in repr(RNN(D, H, batch_first=False))


@pytest.mark.parametrize("grad", [True, False], ids=["grad", "no-grad"])
@pytest.mark.parametrize("bidirectional", [False, True], ids=["uni", "bi"])
@pytest.mark.parametrize("cell", ["elman", "lstm", "gru"])
def test_state_dict_moves_between_layouts(cell, bidirectional, grad):
    """The layout is not a weight: a batch-first model's state_dict loads into a seq-first
    one, which then computes the same function on the transposed input."""
    torch.manual_seed(0)
    bf = RNN(D, H, 2, cell=cell, bidirectional=bidirectional).double()
    sf = RNN(D, H, 2, cell=cell, bidirectional=bidirectional, batch_first=False).double()
    sf.load_state_dict(bf.state_dict())
    x = torch.randn(B, T, D, dtype=torch.float64)  # batch-first
    x[torch.arange(T).unsqueeze(0) >= torch.tensor(RAGGED).unsqueeze(1)] = 1e3  # padding
    x_bf = x.clone().requires_grad_(grad)
    x_sf = x.transpose(0, 1).contiguous().requires_grad_(grad)  # (T, B, D)
    with torch.set_grad_enabled(grad):
        out_bf, state_bf = bf(x_bf, RAGGED)  # (B, T, H*K)
        out_sf, state_sf = sf(x_sf, RAGGED)  # (T, B, H*K)
    close = {"atol": 1e-12, "rtol": 1e-12}
    torch.testing.assert_close(out_sf.transpose(0, 1), out_bf, **close)
    for s_sf, s_bf in zip(as_tuple(state_sf), as_tuple(state_bf), strict=True):
        torch.testing.assert_close(s_sf, s_bf, **close)  # (L*K, B, H) in both layouts
    if grad:
        out_bf.square().sum().backward()
        out_sf.square().sum().backward()
        torch.testing.assert_close(x_sf.grad.transpose(0, 1), x_bf.grad, **close)
        for (name, p_bf), p_sf in zip(bf.named_parameters(), sf.parameters(), strict=True):
            torch.testing.assert_close(p_sf.grad, p_bf.grad, **close, msg=name)


@pytest.mark.parametrize(
    ("call", "match"),
    [
        (lambda rnn, x: rnn(x[0]), r"x must be 3-D \(time, batch, features\)"),
        (lambda rnn, x: rnn(x[:0]), r"x has no time steps .*\(time, batch, features\)"),
        (lambda rnn, x: rnn(x, [T] * (B - 1)), rf"lengths must be {B} integers"),
        (lambda rnn, x: rnn(x, [T + 1] + [T] * (B - 1)), rf"lengths must lie in \[1, {T}\]"),
        (lambda rnn, x: rnn(x, state=torch.zeros(2, T, H)), rf"h_0 must have shape \(2, {B}, "),
    ],
    ids=["rank", "empty-time", "lengths-count", "length-over-T", "state-batch"],
)
def test_seq_first_errors_name_the_layout(call, match):
    """B and T are read from the seq-first positions, and messages say which layout."""
    rnn = RNN(D, H, 2, batch_first=False)
    with pytest.raises(ValueError, match=match):
        call(rnn, torch.randn(T, B, D))


@pytest.mark.parametrize("batch_first", [False, True], ids=["seq-first", "batch-first"])
@pytest.mark.parametrize("kind", list(KINDS))
def test_torchs_call_with_the_state_second_runs_unchanged(kind, batch_first):
    """torch code calls `rnn(x, hx)` and `rnn.flatten_parameters()`: the state given where
    our `lengths` goes is taken as the state, and flattening is a no-op."""
    torch.manual_seed(0)
    cls, kwargs = KINDS[kind]
    theirs = cls(D, H, 2, batch_first=batch_first, **kwargs)
    ours = RNN.from_torch(theirs)
    ours.flatten_parameters()
    x = torch.randn(B, T, D) if batch_first else torch.randn(T, B, D)
    hx = torch.randn(2, B, H)
    state = (hx, torch.randn(2, B, H)) if kind == "lstm" else hx
    out, final = ours(x, state)
    out_ref, final_ref = theirs(x, state)
    assert_equal_to(out, out_ref, "output")
    for s, s_ref in zip(as_tuple(final), as_tuple(final_ref), strict=True):
        assert_equal_to(s, s_ref, "final state")
    lengths = torch.full((B,), T)  # lengths in that place are still lengths
    assert torch.equal(ours(x, lengths)[0], ours(x)[0])
