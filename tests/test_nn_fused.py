"""The one-kernel steps of `rnn_tasks.nn.fused` compute what the torch-op loops compute.

Without a GPU the Triton kernels run in Triton's interpreter on CPU tensors (conftest.py
sets TRITON_INTERPRET); `_device_ok` is widened to let them through, and the loops run in
the stand-in CUDA graph of tests/test_nn_graphs.py (the kernels serve graphed loops only:
the first call of a shape runs the torch ops, the next ones the kernels). Every path is compared
with the torch-op loop, in float32, forward and backward: LSTM and GRU, padded or not, both
directions, time-major and batch-first memory, training and inference. On a machine with CUDA
the compiled kernels are checked the same way, with the loops replayed from CUDA graphs.
"""

from __future__ import annotations

import pytest
import torch
from torch import nn

from rnn_tasks.nn import RNN, fused, graphs, matmul_backend, set_matmul_backend
from tests.test_nn_graphs import StandIn

pytest.importorskip("triton", reason="the fused steps are Triton kernels")

B, T, D, H = 5, 6, 3, 20  # H not a power of two: the kernels' last block is partial
LENGTHS = torch.tensor([6, 1, 4, 6, 3])
KINDS = {"lstm": nn.LSTM, "gru": nn.GRU}

pytestmark = pytest.mark.usefixtures("one_thread")  # tests/conftest.py


@pytest.fixture
def on_cpu(monkeypatch):
    """The kernels take CPU tensors (interpreted) and count their calls."""
    monkeypatch.setattr(fused, "_device_ok", lambda t: True)
    # as on a GPU, torch's own products (oneDNN's packed weights have no strides to copy)
    before = matmul_backend()
    set_matmul_backend("blas")
    stand_in = StandIn()
    monkeypatch.setattr(graphs, "_record", stand_in)
    monkeypatch.setattr(graphs, "_use_graph", lambda inputs: graphs.cuda_graphs())
    graphs.set_cuda_graphs(True)
    calls = {"n": 0, "stand_in": stand_in}
    for name in ("lstm_step", "lstm_step_back", "gru_step", "gru_step_back"):
        original = getattr(fused, name)

        def counted(*args, _original=original):
            calls["n"] += 1
            return _original(*args)

        monkeypatch.setattr(fused, name, counted)
    yield calls
    fused.set_fused_steps(True)
    graphs.clear()
    set_matmul_backend(before)


def run(model: RNN, x, lengths, state, train: bool):
    """Outputs, final states, and with `train` every gradient, of one pass."""
    if not train:
        with torch.no_grad():
            out, final = model(x, lengths, state)
        return [out, *(final if isinstance(final, tuple) else (final,))]
    model.zero_grad(set_to_none=True)
    x = x.clone().requires_grad_()
    out, final = model(x, lengths, state)
    finals = final if isinstance(final, tuple) else (final,)
    weights = torch.linspace(-1, 1, out.shape[-1], device=out.device)
    ((out * weights).sum() + sum((f**2).sum() for f in finals)).backward()
    return [out.detach(), *(f.detach() for f in finals), x.grad] + [
        p.grad.clone() for p in model.parameters()
    ]


def compare(kind, bidirectional, ragged, train, batch_first=True, device="cpu", H=H, layers=2):
    torch.manual_seed(0)
    theirs = KINDS[kind](D, H, layers, batch_first=batch_first, bidirectional=bidirectional)
    model = RNN.from_torch(theirs.to(device))
    shape = (B, T, D) if batch_first else (T, B, D)
    x = torch.randn(shape, device=device)
    rows = layers * (2 if bidirectional else 1)
    s = [torch.randn(rows, B, H, device=device) for _ in range(2)]
    state = tuple(s) if kind == "lstm" else s[0]
    lengths = LENGTHS if ragged else None
    fused.set_fused_steps(False)
    expected = run(model, x, lengths, state, train)
    fused.set_fused_steps(True)
    for _ in range(3):  # eager, recorded, replayed
        got = run(model, x, lengths, state, train)
        for a, b in zip(got, expected, strict=True):
            scale = b.abs().max().item()
            torch.testing.assert_close(a, b, rtol=1e-5, atol=1e-6 * max(scale, 1.0))


@pytest.mark.parametrize("train", [True, False], ids=["train", "infer"])
@pytest.mark.parametrize("ragged", [False, True], ids=["equal", "ragged"])
@pytest.mark.parametrize("bidirectional", [False, True], ids=["uni", "bi"])
@pytest.mark.parametrize("kind", list(KINDS))
def test_fused_steps_match_the_torch_ops(on_cpu, kind, bidirectional, ragged, train):
    compare(kind, bidirectional, ragged, train)
    assert on_cpu["n"] > 0, "the fused kernels were not used"


@pytest.mark.parametrize("kind", list(KINDS))
def test_fused_steps_match_in_time_major_memory(on_cpu, kind):
    compare(kind, bidirectional=True, ragged=True, train=True, batch_first=False)
    assert on_cpu["n"] > 0


@pytest.mark.parametrize("kind", list(KINDS))
def test_fused_steps_match_over_several_blocks_of_hidden_units(on_cpu, kind):
    compare(kind, bidirectional=False, ragged=True, train=True, H=300, layers=1)  # 256 + 44
    assert on_cpu["n"] > 0


def test_a_graph_is_recorded_for_each_choice_of_fused_steps(on_cpu):
    """Turning the kernels off must not replay a graph recorded with them."""
    torch.manual_seed(0)
    model = RNN.from_torch(nn.GRU(D, H, 1, batch_first=True))
    x = torch.randn(B, T, D)
    fused.set_fused_steps(False)
    expected = run(model, x, None, None, train=False)  # the torch ops, no graph involved
    fused.set_fused_steps(True)
    for _ in range(3):  # eager, recorded with the kernels, replayed
        run(model, x, None, None, train=False)
    assert on_cpu["n"] > 0
    recorded = on_cpu["stand_in"].recorded
    fused.set_fused_steps(False)
    for _ in range(3):
        got = run(model, x, None, None, train=False)
        for a, b in zip(got, expected, strict=True):
            torch.testing.assert_close(a, b, rtol=0, atol=0)  # the torch ops, exactly
    # a graph of its own: a real one replays the kernels it recorded, whatever the switch
    assert on_cpu["stand_in"].recorded == recorded + 1


def test_fused_steps_are_only_for_float32_rows_with_unit_stride(on_cpu):
    rows = torch.zeros(4, 6)
    assert fused.usable(rows, None)
    assert not fused.usable(rows.double())
    assert not fused.usable(rows.t())
    fused.set_fused_steps(False)
    assert not fused.usable(rows)


def test_fused_steps_can_be_turned_off_by_environment(monkeypatch):
    monkeypatch.setattr(fused, "_enabled", None)
    monkeypatch.setenv(fused.ENV, "off")
    assert fused.fused_steps() is False
    monkeypatch.setattr(fused, "_enabled", None)
    monkeypatch.setenv(fused.ENV, "2")
    with pytest.raises(ValueError, match="RNN_TASKS_FUSED_STEPS must be 1 or 0"):
        fused.fused_steps()
    monkeypatch.setattr(fused, "_enabled", None)


@pytest.mark.skipif(not torch.cuda.is_available(), reason="no CUDA")
@pytest.mark.parametrize("train", [True, False], ids=["train", "infer"])
@pytest.mark.parametrize("ragged", [False, True], ids=["equal", "ragged"])
@pytest.mark.parametrize("kind", list(KINDS))
def test_fused_steps_match_on_cuda_with_graphs(monkeypatch, kind, ragged, train):
    monkeypatch.setattr(torch.backends.cuda.matmul, "allow_tf32", False)
    graphs.set_cuda_graphs(True)
    compare(kind, bidirectional=True, ragged=ragged, train=train, device="cuda")
    fused.set_fused_steps(True)
