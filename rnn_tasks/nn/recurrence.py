"""Unroll one cell over a whole sequence, in one direction.

Shapes are time-major here: T time, B batch, D input, H hidden. (The memory behind them may
be batch-first: `RNN` passes `x.transpose(0, 1)`, and the kernels keep that memory order.)

`forward_rnn(cell, x, state)` is the lecture's loop as written, one `cell(x_t, h)` per step.
`unroll(cell, x, state, mask, reverse, bptt)` computes the same, with padding and either
direction, and returns every step's state (T, B, H) and the final state. Two
implementations of the same function:

- `bptt="manual"`: the hand-written backward pass of `rnn_tasks.nn.bptt` (the default;
  faster, since the weight gradients become one matmul over the whole sequence). When no
  gradient is needed (`torch.no_grad`, `torch.inference_mode`, nothing requires grad) the
  same forward kernels run without keeping anything for a backward pass;
- `bptt="autograd"`: a plain Python loop over `cell.recur`, differentiated by autograd.
  This is the lecture's definition run as written, and the reference in the tests.

Both hoist the input projection `W x_t + b` out of the loop: one matmul for all steps.

Under `torch.export` (`torch.compiler.is_exporting()`) neither runs: their Python loops
over `range(T)` and per-step mask checks fix T and read tensor values, so a program
exported through them would hold one length only, or fail (`GuardOnDataDependentSymNode`).
`_unroll_scan` is the autograd unroll written as a `scan` over time instead, which
`torch.export` keeps as one loop over a dynamic T; eager runs never take it.
"""

from __future__ import annotations

from typing import Literal

import torch
from torch import Tensor

from .bptt import GRUBPTT, LSTMBPTT, ElmanBPTT, elman_forward, gru_forward, lstm_forward
from .cells import ElmanCell, GRUCell, LSTMCell, LSTMState, _Cell
from .matmul import REDUCED, inference_only

BPTT = Literal["manual", "autograd"]
BPTT_MODES = ("manual", "autograd")


def forward_rnn(
    cell: _Cell, x: Tensor, state: Tensor | LSTMState | None = None
) -> tuple[Tensor, Tensor | LSTMState]:
    """The lecture's FORWARDRNN, as written: for t = 1..T, `h_t = cell(x_t, h_{t-1})`.

    `x` is (T, B, D), time first; returns every step's `h_t` (T, B, H) and the final state.
    No padding, one direction, autograd for the backward pass: the definition that
    `unroll` (one input matmul for all steps, the hand-written BPTT) must agree with
    (tests/test_nn_rnn.py, docs/lecture.md).
    """
    outputs = []
    for x_t in x:  # (B, D): the input at step t
        h_t, state = cell(x_t, state)  # state: h_{t-1} in, h_t out (LSTM: (h, c))
        outputs.append(h_t)
    return torch.stack(outputs), state


def unroll(
    cell: _Cell,
    x: Tensor,
    state: Tensor | LSTMState,
    mask: Tensor | None = None,
    reverse: bool = False,
    bptt: BPTT = "manual",
    out: Tensor | None = None,
    U: Tensor | None = None,
) -> tuple[Tensor, Tensor | LSTMState]:
    """Run `cell` over `x` (T, B, D) from `state`; returns (states (T, B, H), final state).

    `mask` (T, B, 1) bool marks real steps; padded steps keep the state unchanged, so the
    final state is each sequence's state after its last real step in this direction.
    `out`, a (T, B, H) tensor or view, receives the states (a bidirectional layer passes
    its two halves of one (T, B, 2H) buffer, so no concatenation is needed).
    `U`, when given, replaces `cell.U` for this call (weight drop: a dropped copy of it).
    """
    if torch.compiler.is_exporting():
        S, final = _unroll_scan(cell, x, state, mask, reverse)
    elif bptt == "autograd":
        S, final = _unroll_autograd(cell, x, state, mask, reverse, U)
    elif _needs_grad(cell, x, state) or not isinstance(cell, (ElmanCell, LSTMCell, GRUCell)):
        if cell.precision in REDUCED:
            raise inference_only(cell.precision)
        S, final = _unroll_manual(cell, x, state, mask, reverse, U)
    else:
        return _unroll_inference(cell, x, state, mask, reverse, out, U)
    if out is not None:
        S = out.copy_(S)
    return S, final


def _needs_grad(cell: _Cell, x: Tensor, state) -> bool:
    if not torch.is_grad_enabled():
        return False
    states = state if isinstance(state, tuple) else (state,)
    return any(t.requires_grad for t in (x, *states, *cell.parameters()))


def _unroll_manual(cell, x, state, mask, reverse, U=None):
    """The hand-written BPTT of `rnn_tasks.nn.bptt`: one autograd node per layer-direction."""
    U = cell.U if U is None else U
    if isinstance(cell, LSTMCell):
        h0, c0 = state
        S, h_n, c_n = LSTMBPTT.apply(x, cell.W, cell.b, U, h0, c0, mask, reverse)
        return S, (h_n, c_n)
    if isinstance(cell, GRUCell):
        return GRUBPTT.apply(x, cell.W, cell.b, U, cell.b_hn, state, mask, reverse)
    if isinstance(cell, ElmanCell):
        relu = cell.nonlinearity == "relu"
        return ElmanBPTT.apply(x, cell.W, cell.b, U, state, mask, reverse, relu)
    raise TypeError(f"no hand-written BPTT for {type(cell).__name__}; use bptt='autograd'")


def _unroll_inference(cell, x, state, mask, reverse, out, U=None):
    """The same forward kernels, storing nothing for a backward pass that will not come."""
    U = cell.U if U is None else U
    mm = REDUCED.get(cell.precision)
    if isinstance(cell, LSTMCell):
        h0, c0 = state
        S, h, c = lstm_forward(x, cell.W, cell.b, U, h0, c0, mask, reverse, out, mm=mm)
        return S, (h, c)
    if isinstance(cell, GRUCell):
        return gru_forward(x, cell.W, cell.b, U, cell.b_hn, state, mask, reverse, out, mm=mm)
    relu = cell.nonlinearity == "relu"
    return elman_forward(x, cell.W, cell.b, U, state, mask, reverse, relu, out, mm=mm)


def _unroll_autograd(cell, x, state, mask, reverse, U=None):
    xw = cell.project(x)
    steps = range(x.shape[0] - 1, -1, -1) if reverse else range(x.shape[0])
    outputs = [None] * x.shape[0]
    for t in steps:
        h, new_state = cell.recur(xw[t], state, U)
        if mask is not None:  # padded step: keep the state
            m = mask[t]
            if isinstance(new_state, tuple):
                pairs = zip(new_state, state, strict=True)
                new_state = tuple(torch.where(m, n, s) for n, s in pairs)
                h = new_state[0]
            else:
                new_state = h = torch.where(m, h, state)
        state = new_state
        outputs[t] = h
    return torch.stack(outputs), state


def _unroll_scan(cell, x, state, mask, reverse):
    """`_unroll_autograd` as one `scan` over time: what `torch.export` traces, for any T."""
    # A prototype in torch (2.5+) and not yet public: imported here, for export only.
    from torch._higher_order_ops.scan import scan

    xw = cell.project(x)  # (T, B, G*H)
    if mask is None:
        mask = xw.new_ones(x.shape[0], x.shape[1], 1, dtype=torch.bool)

    def step(state, inputs):
        xw_t, m = inputs
        h, new_state = cell.recur(xw_t, state)
        if isinstance(new_state, tuple):
            new_state = tuple(torch.where(m, n, s) for n, s in zip(new_state, state, strict=True))
            h = new_state[0]
        else:
            new_state = h = torch.where(m, h, state)
        return new_state, h.clone()  # scan's outputs may not alias its carry

    final, S = scan(step, state, (xw, mask), reverse=reverse)  # S (T, B, H)
    return S, final
