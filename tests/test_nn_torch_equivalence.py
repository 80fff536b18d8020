"""`rnn_tasks.nn.RNN` computes the same function as `torch.nn.RNN/LSTM/GRU`.

Weights are copied with `RNN.from_torch`; ragged batches go to torch packed
(`pack_padded_sequence(enforce_sorted=False)`) and to ours padded with `lengths`.
One scalar loss touches every output step and both final states through random probes,
so every path (outputs, h_n, c_n, the initial state) carries a gradient.
On a machine with CUDA the first test also runs there, against cuDNN's kernels.
"""

from __future__ import annotations

import pytest
import torch
from torch import Tensor, nn
from torch.nn.utils.rnn import pack_padded_sequence, pad_packed_sequence

from rnn_tasks.nn import RNN

B, T, D, H = 13, 7, 5, 8
# name -> (torch class, torch kwargs)
KINDS = {
    "elman-tanh": (nn.RNN, {"nonlinearity": "tanh"}),
    "elman-relu": (nn.RNN, {"nonlinearity": "relu"}),
    "lstm": (nn.LSTM, {}),
    "gru": (nn.GRU, {}),
}
RTOL = {torch.float64: 1e-10, torch.float32: 1e-5}
# cuDNN orders its float32 sums its own way: through 3 stacked bidirectional Elman layers
# the outputs were seen 1.3e-5 apart on an H200 (float64 agrees to 1e-10 there too).
CUDA_FLOAT32_RTOL = 5e-5
RAGGED = [7, 1, 3, 7, 2, 5, 6, 4, 7, 1, 3, 2, 6]  # B lengths, both ends of [1, T] included
DEVICES = [
    "cpu",
    pytest.param("cuda", marks=pytest.mark.skipif(not torch.cuda.is_available(), reason="no CUDA")),
]


pytestmark = pytest.mark.usefixtures("one_thread")  # tests/conftest.py


def assert_equal_to(actual: Tensor, expected: Tensor, what: str) -> None:
    """float64 within 1e-10; float32 within 1e-5 (5e-5 on CUDA) of the reference's largest entry.

    float32 sums of many terms (a weight gradient adds B * T products) cancel to small
    entries whose error is set by the size of the terms, not of the result, so float32's
    absolute tolerance scales with the tensor.
    """
    rtol = RTOL[expected.dtype]
    if expected.is_cuda and expected.dtype == torch.float32:
        rtol = CUDA_FLOAT32_RTOL
    scale = expected.abs().max().item() if expected.dtype == torch.float32 else 1.0
    torch.testing.assert_close(
        actual, expected, rtol=rtol, atol=rtol * scale, msg=lambda m: f"{what}: {m}"
    )


def run_torch(module: nn.RNNBase, x: Tensor, lengths: Tensor | None, state):
    if lengths is None:
        return module(x, state)
    packed = pack_padded_sequence(x, lengths, batch_first=True, enforce_sorted=False)
    out, state = module(packed, state)
    out, _ = pad_packed_sequence(out, batch_first=True, total_length=x.shape[1])
    return out, state


def as_tuple(state) -> tuple[Tensor, ...]:
    return state if isinstance(state, tuple) else (state,)


def probe_loss(out: Tensor, state, probes: list[Tensor]) -> Tensor:
    """A scalar that depends on every output and final-state entry with a random weight."""
    parts = (out, *as_tuple(state))
    return sum((p * w).sum() for p, w in zip(parts, probes, strict=True))


def gradient_pairs(ours: RNN, theirs: nn.RNNBase) -> list[tuple[str, Tensor, Tensor]]:
    """(name, our gradient, torch's gradient) for every parameter of both modules.

    Our `b` is torch's `bias_ih + bias_hh`, so its gradient equals each of theirs; the GRU
    keeps `b_hn` (torch's `bias_hh` n block) apart, and `b`'s n block is `bias_ih`'s alone.
    """
    pairs, used = [], set()
    for k, cell in enumerate(ours.cells):
        layer, direction = divmod(k, ours.num_directions)
        suffix = f"l{layer}" + ("_reverse" if direction else "")
        names = {n: f"{n}_{suffix}" for n in ("weight_ih", "weight_hh", "bias_ih", "bias_hh")}
        used.update(names.values())
        grad = {n: getattr(theirs, full).grad for n, full in names.items()}
        pairs += [(f"cells.{k}.W", cell.W.grad, grad["weight_ih"])]
        pairs += [(f"cells.{k}.U", cell.U.grad, grad["weight_hh"])]
        if ours.cell == "gru":
            h2 = 2 * ours.hidden_size
            pairs += [(f"cells.{k}.b", cell.b.grad, grad["bias_ih"])]
            pairs += [(f"cells.{k}.b[:2H]", cell.b.grad[:h2], grad["bias_hh"][:h2])]
            pairs += [(f"cells.{k}.b_hn", cell.b_hn.grad, grad["bias_hh"][h2:])]
        else:
            pairs += [(f"cells.{k}.b", cell.b.grad, grad["bias_ih"])]
            pairs += [(f"cells.{k}.b", cell.b.grad, grad["bias_hh"])]
    # Nothing left out on either side.
    assert used == {n for n, _ in theirs.named_parameters()}
    assert {n.split("[")[0] for n, _, _ in pairs} == {n for n, _ in ours.named_parameters()}
    return pairs


@pytest.fixture
def exact_cudnn(monkeypatch):
    """cuDNN may round float32 through TF32 (10-bit mantissas): keep it to full float32."""
    monkeypatch.setattr(torch.backends.cudnn, "allow_tf32", False)
    monkeypatch.setattr(torch.backends.cuda.matmul, "allow_tf32", False)


@pytest.mark.usefixtures("exact_cudnn")
@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize("bptt", ["manual", "autograd"])
@pytest.mark.parametrize("dtype", [torch.float64, torch.float32], ids=["f64", "f32"])
@pytest.mark.parametrize("with_state", [False, True], ids=["zero-state", "given-state"])
@pytest.mark.parametrize("ragged", [False, True], ids=["equal", "ragged"])
@pytest.mark.parametrize("bidirectional", [False, True], ids=["uni", "bi"])
@pytest.mark.parametrize("num_layers", [1, 2, 3])
@pytest.mark.parametrize("kind", list(KINDS))
def test_matches_torch(kind, num_layers, bidirectional, ragged, with_state, dtype, bptt, device):
    torch.manual_seed(0)
    cls, kwargs = KINDS[kind]
    theirs = cls(D, H, num_layers, batch_first=True, bidirectional=bidirectional, **kwargs)
    theirs = theirs.to(device, dtype)
    ours = RNN.from_torch(theirs, bptt=bptt)
    assert ours.bptt == bptt

    x = torch.randn(B, T, D, dtype=dtype).to(device)
    lengths = torch.tensor(RAGGED) if ragged else None  # on the CPU, as torch's packing wants
    rows = num_layers * (2 if bidirectional else 1)
    n_state = 2 if kind == "lstm" else 1
    state0 = [torch.randn(rows, B, H, dtype=dtype).to(device) for _ in range(n_state)]

    def leaf_inputs():
        xs = x.clone().requires_grad_()
        s0 = [s.clone().requires_grad_() for s in state0]
        state = None if not with_state else (tuple(s0) if kind == "lstm" else s0[0])
        return xs, s0, state

    x_ours, s0_ours, state_ours = leaf_inputs()
    x_ref, s0_ref, state_ref = leaf_inputs()
    out, state = ours(x_ours, lengths, state_ours)
    out_ref, state_ref_n = run_torch(theirs, x_ref, lengths, state_ref)

    assert_equal_to(out, out_ref, "output")
    assert len(as_tuple(state)) == n_state
    for i, (s, s_ref) in enumerate(zip(as_tuple(state), as_tuple(state_ref_n), strict=True)):
        assert_equal_to(s, s_ref, ("h_n", "c_n")[i])

    probes = [torch.randn_like(p) for p in (out_ref, *as_tuple(state_ref_n))]
    probe_loss(out, state, probes).backward()
    probe_loss(out_ref, state_ref_n, probes).backward()

    assert_equal_to(x_ours.grad, x_ref.grad, "x.grad")
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
def test_matches_torch_without_grad(
    kind, num_layers, bidirectional, ragged, with_state, dtype, no_grad
):
    """Without autograd the forward kernels keep nothing for backward: same numbers."""
    torch.manual_seed(0)
    cls, kwargs = KINDS[kind]
    theirs = cls(D, H, num_layers, batch_first=True, bidirectional=bidirectional, **kwargs)
    theirs = theirs.to(dtype)
    ours = RNN.from_torch(theirs)
    x = torch.randn(B, T, D, dtype=dtype)
    lengths = torch.tensor(RAGGED) if ragged else None
    state = None
    if with_state:
        rows = num_layers * (2 if bidirectional else 1)
        s = [torch.randn(rows, B, H, dtype=dtype) for _ in range(2)]
        state = tuple(s) if kind == "lstm" else s[0]
    with no_grad():
        out, final = ours(x, lengths, state)
        out_ref, final_ref = run_torch(theirs, x, lengths, state)
    assert not out.requires_grad
    assert_equal_to(out, out_ref, "output")
    for i, (s, s_ref) in enumerate(zip(as_tuple(final), as_tuple(final_ref), strict=True)):
        assert_equal_to(s, s_ref, ("h_n", "c_n")[i])


@pytest.mark.parametrize("frozen", ["input", "weights"])
@pytest.mark.parametrize("kind", list(KINDS))
def test_gradients_when_only_some_inputs_require_them(kind, frozen):
    """An embedding's output (x requires grad) or fixed features (it does not), frozen
    weights or trained ones: whatever requires a gradient gets torch's."""
    torch.manual_seed(0)
    cls, kwargs = KINDS[kind]
    theirs = cls(D, H, 2, batch_first=True, bidirectional=True, **kwargs).double()
    ours = RNN.from_torch(theirs)
    x = torch.randn(B, T, D, dtype=torch.float64)
    lengths = torch.tensor(RAGGED)
    if frozen == "weights":
        for p in (*ours.parameters(), *theirs.parameters()):
            p.requires_grad_(False)
    x_ours, x_ref = (x.clone().requires_grad_(frozen == "weights") for _ in range(2))
    out, state = ours(x_ours, lengths)
    out_ref, state_ref = run_torch(theirs, x_ref, lengths, None)
    probes = [torch.randn_like(p) for p in (out_ref, *as_tuple(state_ref))]
    probe_loss(out, state, probes).backward()
    probe_loss(out_ref, state_ref, probes).backward()
    if frozen == "weights":
        assert_equal_to(x_ours.grad, x_ref.grad, "x.grad")
        assert all(p.grad is None for p in ours.parameters())
    else:
        assert x_ours.grad is None
        for name, g, g_ref in gradient_pairs(ours, theirs):
            assert_equal_to(g, g_ref, f"{name}.grad")
