"""The recurrent loops replayed from CUDA graphs (`rnn_tasks.nn.graphs`) compute what the
eager loops compute.

On the CPU, `_record` is replaced by a stand-in with a graph's contract: the loop runs on
the graph's own buffers, each replay writes the same tensors again, and reading a tensor on
the host while recording fails, as it does inside a CUDA capture. That checks everything
around the capture: the buffers copied in and out, what is cloned, the keys, the eager first
call, the masks read without the host. On a machine with CUDA the real graphs are checked
against the eager loop and against cuDNN.
"""

from __future__ import annotations

import contextlib

import pytest
import torch
from torch import nn

from rnn_tasks.nn import RNN, graphs

KINDS = {
    "elman-tanh": (nn.RNN, {"nonlinearity": "tanh"}),
    "elman-relu": (nn.RNN, {"nonlinearity": "relu"}),
    "lstm": (nn.LSTM, {}),
    "gru": (nn.GRU, {}),
}
B, T, D, H = 5, 6, 4, 4  # D == H: stacked layers share one graph, so their copies must not mix
LENGTHS = torch.tensor([6, 1, 4, 6, 3])

pytestmark = pytest.mark.usefixtures("one_thread")  # tests/conftest.py


@contextlib.contextmanager
def host_reads_fail():
    """Inside a CUDA capture a loop may not read values on the host."""

    def refuse(*args, **kwargs):
        raise AssertionError("a graphed loop read a tensor on the host")

    with pytest.MonkeyPatch.context() as mp:
        for name in ("tolist", "item", "__bool__"):
            mp.setattr(torch.Tensor, name, refuse)
        yield


class StandIn:
    """`graphs._record` for CPU tensors: replay reruns the loop on the recorded buffers."""

    def __init__(self) -> None:
        self.recorded = 0
        self.replayed = 0

    def __call__(self, run):
        self.recorded += 1
        with host_reads_fail():
            returned = run()

        def replay():
            self.replayed += 1
            with host_reads_fail():
                fresh = run()
            for mine, new in zip(returned, fresh, strict=True):
                if mine is not new:
                    mine.copy_(new)

        return replay, returned


@pytest.fixture
def stand_in(monkeypatch):
    fake = StandIn()
    monkeypatch.setattr(graphs, "_record", fake)
    monkeypatch.setattr(graphs, "_use_graph", lambda inputs: graphs.cuda_graphs())
    graphs.set_cuda_graphs(True)
    yield fake
    graphs.set_cuda_graphs(True)
    graphs.clear()


def make_pair(kind: str, bidirectional: bool, device: str = "cpu", dtype=torch.float64):
    torch.manual_seed(0)
    cls, kwargs = KINDS[kind]
    theirs = cls(D, H, 2, batch_first=True, bidirectional=bidirectional, **kwargs)
    theirs = theirs.to(device, dtype)
    return RNN.from_torch(theirs), theirs


def train_step(model: RNN, x, lengths, state):
    """Outputs, final state and every gradient of one forward and backward pass."""
    model.zero_grad(set_to_none=True)
    x = x.clone().requires_grad_()
    out, final = model(x, lengths, state)
    finals = final if isinstance(final, tuple) else (final,)
    loss = (out * torch.linspace(-1, 1, out.shape[-1], dtype=out.dtype, device=out.device)).sum()
    loss = loss + sum((f**2).sum() for f in finals)
    loss.backward()
    grads = [p.grad.clone() for p in model.parameters()]
    return [out.detach(), *[f.detach() for f in finals], x.grad, *grads]


def inputs(kind: str, bidirectional: bool, ragged: bool, device="cpu", dtype=torch.float64):
    g = torch.Generator().manual_seed(1)
    x = torch.randn(B, T, D, generator=g, dtype=dtype).to(device)
    rows = 2 * (2 if bidirectional else 1)
    s = [torch.randn(rows, B, H, generator=g, dtype=dtype).to(device) for _ in range(2)]
    state = tuple(s) if kind == "lstm" else s[0]
    return x, (LENGTHS if ragged else None), state


@pytest.mark.parametrize("ragged", [False, True], ids=["equal", "ragged"])
@pytest.mark.parametrize("bidirectional", [False, True], ids=["uni", "bi"])
@pytest.mark.parametrize("kind", list(KINDS))
def test_replayed_loops_train_as_the_eager_ones(stand_in, kind, bidirectional, ragged):
    model, _ = make_pair(kind, bidirectional)
    x, lengths, state = inputs(kind, bidirectional, ragged)
    graphs.set_cuda_graphs(False)
    expected = train_step(model, x, lengths, state)
    graphs.set_cuda_graphs(True)
    for call in range(3):  # eager, recorded, replayed
        got = train_step(model, x * (1 + call), lengths, state)
        graphs.set_cuda_graphs(False)
        expected = train_step(model, x * (1 + call), lengths, state)
        graphs.set_cuda_graphs(True)
        for a, b in zip(got, expected, strict=True):
            torch.testing.assert_close(a, b, rtol=0, atol=0)
    assert stand_in.recorded > 0 and stand_in.replayed > 0


@pytest.mark.parametrize("no_grad", [torch.no_grad, torch.inference_mode])
@pytest.mark.parametrize("ragged", [False, True], ids=["equal", "ragged"])
@pytest.mark.parametrize("kind", list(KINDS))
def test_replayed_loops_infer_as_the_eager_ones(stand_in, kind, ragged, no_grad):
    model, _ = make_pair(kind, bidirectional=True)
    x, lengths, state = inputs(kind, True, ragged)
    for call in range(3):
        with no_grad():
            got = model(x + call, lengths, state)
            graphs.set_cuda_graphs(False)
            expected = model(x + call, lengths, state)
            graphs.set_cuda_graphs(True)
        torch.testing.assert_close(got, expected, rtol=0, atol=0)
    assert stand_in.replayed > 0


def test_an_expanded_initial_state_is_copied_into_a_buffer_of_its_own(stand_in):
    """A state broadcast over the batch (stride 0) is one memory location per column: the
    graph's buffer for it must not copy those strides."""
    model, _ = make_pair("lstm", bidirectional=False)
    x, _, _ = inputs("lstm", False, False)
    h0, c0 = (torch.randn(2, 1, H, dtype=torch.float64).expand(2, B, H) for _ in range(2))
    graphs.set_cuda_graphs(False)
    expected = train_step(model, x, None, (h0, c0))
    graphs.set_cuda_graphs(True)
    for _ in range(3):
        got = train_step(model, x, None, (h0, c0))
        for a, b in zip(got, expected, strict=True):
            torch.testing.assert_close(a, b, rtol=0, atol=0)
    assert stand_in.replayed > 0


def test_a_shape_is_recorded_on_its_second_call_and_kept_per_signature(stand_in, monkeypatch):
    model, _ = make_pair("gru", bidirectional=False)
    model.requires_grad_(False)  # forward loops only: one graph per call signature
    x = torch.randn(B, T, D, dtype=torch.float64)
    model(x)  # the first layer runs eagerly; the second has its shape: recorded
    assert stand_in.recorded == 1 and stand_in.replayed == 1
    model(x)
    assert (stand_in.recorded, stand_in.replayed, len(graphs._graphs)) == (1, 3, 1)
    monkeypatch.setattr(graphs, "MAX_GRAPHS", 2)
    for steps in (3, 4, 5):
        model(x[:, :steps])
        model(x[:, :steps])
    assert stand_in.recorded == 2 and len(graphs._graphs) == 2  # full: T 4 and 5 run eagerly
    replayed = stand_in.replayed
    model(x[:, :3])
    assert stand_in.replayed == replayed + 2  # the graphs kept still replay


def test_graphs_can_be_turned_off_by_environment(monkeypatch):
    monkeypatch.setattr(graphs, "_enabled", None)
    monkeypatch.setenv(graphs.ENV, "0")
    assert graphs.cuda_graphs() is False
    monkeypatch.setattr(graphs, "_enabled", None)
    monkeypatch.setenv(graphs.ENV, "maybe")
    with pytest.raises(ValueError, match="RNN_TASKS_CUDA_GRAPHS must be 1 or 0"):
        graphs.cuda_graphs()
    monkeypatch.setattr(graphs, "_enabled", None)


def test_cpu_tensors_never_take_a_graph():
    model, _ = make_pair("lstm", bidirectional=False)
    graphs.set_cuda_graphs(True)
    x = torch.randn(B, T, D, dtype=torch.float64)
    for _ in range(3):
        train_step(model, x, None, None)
    assert not graphs._graphs and not graphs._seen


# -- on a GPU ------------------------------------------------------------------------------

needs_cuda = pytest.mark.skipif(not torch.cuda.is_available(), reason="no CUDA")


@pytest.fixture
def exact_cuda(monkeypatch):
    monkeypatch.setattr(torch.backends.cudnn, "allow_tf32", False)
    monkeypatch.setattr(torch.backends.cuda.matmul, "allow_tf32", False)
    graphs.clear()
    yield
    graphs.set_cuda_graphs(True)
    graphs.clear()


@needs_cuda
@pytest.mark.usefixtures("exact_cuda")
@pytest.mark.parametrize("dtype", [torch.float64, torch.float32], ids=["f64", "f32"])
@pytest.mark.parametrize("ragged", [False, True], ids=["equal", "ragged"])
@pytest.mark.parametrize("bidirectional", [False, True], ids=["uni", "bi"])
@pytest.mark.parametrize("kind", list(KINDS))
def test_cuda_graphs_train_as_the_eager_loop_and_cudnn(kind, bidirectional, ragged, dtype):
    model, theirs = make_pair(kind, bidirectional, "cuda", dtype)
    x, lengths, state = inputs(kind, bidirectional, ragged, "cuda", dtype)
    scales = (1.0, 2.0, 3.0, 1.0)  # eager, recorded, replayed twice
    graphs.set_cuda_graphs(False)
    expected = [train_step(model, x * s, lengths, state) for s in scales]
    graphs.set_cuda_graphs(True)
    for scale, want in zip(scales, expected, strict=True):
        got = train_step(model, x * scale, lengths, state)
        for a, b in zip(got, want, strict=True):
            torch.testing.assert_close(a, b, rtol=1e-6, atol=1e-6)
    assert graphs._graphs, "no loop was replayed from a graph"
    with torch.no_grad():  # and cuDNN's outputs, beside the replayed ones
        if lengths is None:
            ref, _ = theirs(x, state)
        else:
            seq = nn.utils.rnn.pack_padded_sequence(
                x, lengths, batch_first=True, enforce_sorted=False
            )
            ref, _ = theirs(seq, state)
            ref, _ = nn.utils.rnn.pad_packed_sequence(ref, batch_first=True, total_length=T)
    tol = 1e-10 if dtype == torch.float64 else 5e-5
    torch.testing.assert_close(got[0], ref, rtol=tol, atol=tol)


@needs_cuda
@pytest.mark.usefixtures("exact_cuda")
@pytest.mark.parametrize("no_grad", [torch.no_grad, torch.inference_mode])
@pytest.mark.parametrize("kind", list(KINDS))
def test_cuda_graphs_infer_as_the_eager_loop(kind, no_grad):
    model, _ = make_pair(kind, True, "cuda", torch.float32)
    x, lengths, state = inputs(kind, True, True, "cuda", torch.float32)
    graphs.set_cuda_graphs(False)
    with no_grad():
        expected = model(x, lengths, state)
    graphs.set_cuda_graphs(True)
    for _ in range(3):
        with no_grad():
            got = model(x, lengths, state)
        torch.testing.assert_close(got, expected, rtol=1e-6, atol=1e-6)
    assert graphs._graphs
