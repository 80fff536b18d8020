"""Unroll one cell over a whole sequence, in one direction.

Shapes are time-major here: T time, B batch, D input, H hidden.

`unroll(cell, x, state, mask, reverse, bptt)` returns every step's state (T, B, H) and the
final state. Two implementations of the same function:

- `bptt="manual"`: the hand-written backward pass of `rnn_tasks.nn.bptt` (the default;
  faster, since the weight gradients become one matmul over the whole sequence);
- `bptt="autograd"`: a plain Python loop over `cell.recur`, differentiated by autograd.
  This is the lecture's definition run as written, and the reference in the tests.

Both hoist the input projection `W x_t + b` out of the loop: one matmul for all steps.
"""

from __future__ import annotations

from typing import Literal

import torch
from torch import Tensor

from .bptt import GRUBPTT, LSTMBPTT, ElmanBPTT
from .cells import ElmanCell, GRUCell, LSTMCell, LSTMState, _Cell

BPTT = Literal["manual", "autograd"]
BPTT_MODES = ("manual", "autograd")


def _lstm_order(H: int, device: torch.device) -> Tensor:
    """Row permutation from torch's gate order (i, f, g, o) to the kernel's (o, i, f, g)."""
    return torch.cat([torch.arange(k * H, (k + 1) * H, device=device) for k in (3, 0, 1, 2)])


def unroll(
    cell: _Cell,
    x: Tensor,
    state: Tensor | LSTMState,
    mask: Tensor | None = None,
    reverse: bool = False,
    bptt: BPTT = "manual",
) -> tuple[Tensor, Tensor | LSTMState]:
    """Run `cell` over `x` (T, B, D) from `state`; returns (states (T, B, H), final state).

    `mask` (T, B, 1) bool marks real steps; padded steps keep the state unchanged, so the
    final state is each sequence's state after its last real step in this direction.
    """
    if bptt == "autograd":
        return _unroll_autograd(cell, x, state, mask, reverse)
    first = 0 if reverse else -1  # index of the last step processed
    if isinstance(cell, LSTMCell):
        h0, c0 = state
        order = _lstm_order(cell.hidden_size, x.device)
        xw = torch.nn.functional.linear(x, cell.W[order], cell.b[order])
        S, c_n = LSTMBPTT.apply(xw, h0, c0, cell.U[order], mask, reverse)
        return S, (S[first], c_n)
    xw = cell.project(x)  # (T, B, G*H): the input side of every step in one matmul
    if isinstance(cell, GRUCell):
        S = GRUBPTT.apply(xw, state, cell.U, cell.b_hn, mask, reverse)
    elif isinstance(cell, ElmanCell):
        S = ElmanBPTT.apply(xw, state, cell.U, mask, reverse, cell.nonlinearity == "relu")
    else:
        raise TypeError(f"no hand-written BPTT for {type(cell).__name__}; use bptt='autograd'")
    return S, S[first]


def _unroll_autograd(cell, x, state, mask, reverse):
    xw = cell.project(x)
    steps = range(x.shape[0] - 1, -1, -1) if reverse else range(x.shape[0])
    outputs = [None] * x.shape[0]
    for t in steps:
        h, new_state = cell.recur(xw[t], state)
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
