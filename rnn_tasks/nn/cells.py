"""One-step recurrent cells written from their equations.

Shapes: B batch, D input features, H hidden units, G gates (Elman 1, GRU 3, LSTM 4).

Every cell splits its step in two so that a recurrence can hoist the input side out of
the time loop (one big matmul for all steps, after `custom_lstms.py` in torch's fastrnns):

    xw_t = cell.project(x_t)          # W x_t + b        (B, G*H), or (B, T, G*H) at once
    h_t, state = cell.recur(xw_t, s)  # adds U h_{t-1}, applies the nonlinearities

`forward(x_t, state)` does both and is the plain-autograd reference.
Weights use torch's gate order (LSTM i, f, g, o; GRU r, z, n) so they copy one-to-one from
`torch.nn.LSTM` / `torch.nn.GRU`, which the tests use as the reference.
"""

from __future__ import annotations

import math
from typing import Literal

import torch
from torch import Tensor, nn

from .matmul import REDUCED, backend_for, inference_only

Nonlinearity = Literal["tanh", "relu"]
NONLINEARITIES: dict[str, object] = {"tanh": torch.tanh, "relu": torch.relu}
LSTMState = tuple[Tensor, Tensor]


def _empty_like(state: Tensor | LSTMState) -> Tensor | LSTMState:
    if isinstance(state, tuple):
        return tuple(_empty_like(s) for s in state)
    return torch.empty_like(state, memory_format=torch.contiguous_format)


class _Cell(nn.Module):
    """Shared parameters: input weights `W` (G*H, D), recurrent weights `U` (G*H, H), bias `b`."""

    gates: int = 1
    precision: str = "float32"  # "int8" or "bf16" products: `rnn_tasks.nn.reduce_precision`

    def __init__(self, input_size: int, hidden_size: int) -> None:
        super().__init__()
        if input_size < 1 or hidden_size < 1:
            raise ValueError(
                f"input_size and hidden_size must be positive, got {input_size}, {hidden_size}"
            )
        self.input_size = input_size
        self.hidden_size = hidden_size
        gh = self.gates * hidden_size
        self.W = nn.Parameter(torch.empty(gh, input_size))
        self.U = nn.Parameter(torch.empty(gh, hidden_size))
        self.b = nn.Parameter(torch.empty(gh))
        self.reset_parameters()

    def reset_parameters(self) -> None:
        # torch.nn.RNN's init: U(-1/sqrt(H), 1/sqrt(H)) for every weight and bias.
        bound = 1.0 / math.sqrt(self.hidden_size)
        for p in self.parameters():
            nn.init.uniform_(p, -bound, bound)

    def project(self, x: Tensor) -> Tensor:
        """Input side of the step, `W x + b`, for one step (B, D) or all steps (B, T, D)."""
        return torch.nn.functional.linear(x, self.W, self.b)

    def initial_state(self, batch_size: int, like: Tensor) -> Tensor:
        return like.new_zeros(batch_size, self.hidden_size)

    def forward(self, x_t: Tensor, state: Tensor | LSTMState | None = None):
        """One time step: `x_t` (B, D) -> `(h_t (B, H), state)`."""
        if state is None:
            state = self.initial_state(x_t.shape[0], x_t)
        if not torch.is_grad_enabled():  # generation: no graph to keep, work in place
            return self._step_into(x_t, state, _empty_like(state))
        if self.precision in REDUCED:
            raise inference_only(self.precision)
        return self.recur(self.project(x_t), state)

    def _step_into(self, x_t: Tensor, state, out):
        """`forward` without autograd: in-place work, the new state written into `out`
        (same structure as `state`, not sharing its memory)."""
        raise NotImplementedError

    def _products(self, x_t: Tensor) -> tuple:
        """The backend for a step without autograd and the weights prepared for it: `W` and
        the blocks of `U` (`_U_blocks`). Generation runs this every step, so the prepared
        weights stay on the cell until the backend, the batch size or a weight changes
        (`_version` counts in-place changes; a new tensor has another address). A key
        checked here rather than `matmul.cached`'s lookups per weight, which cost 8% of an
        Elman or GRU generation step (2 x 512, batch 1)."""
        mm = REDUCED.get(self.precision) or backend_for(x_t)
        W, U = self.W, self.U
        key = (mm, x_t.shape[0], W._version, U._version, W.data_ptr(), U.data_ptr())
        kept = self.__dict__.get("_step_weights")
        if kept is None or kept[0] != key:
            rows = x_t.shape[0]
            blocks = (mm.prepare(M.detach(), rows) for M in (W, *self._U_blocks()))
            kept = self.__dict__["_step_weights"] = (key, (mm, *blocks))
        return kept[1]

    def _U_blocks(self) -> tuple[Tensor, ...]:
        return (self.U,)

    def __getstate__(self) -> dict:
        # Prepared copies are not part of the cell (and an int8 one cannot be pickled).
        state = dict(super().__getstate__())
        state.pop("_step_weights", None)
        return state

    def extra_repr(self) -> str:
        return f"{self.input_size}, {self.hidden_size}"


class ElmanCell(_Cell):
    """Elman (simple) recurrent cell.

        h_t = g(U h_{t-1} + W x_t + b),   g = tanh or relu

    The output layer `y_t = f(V h_t)` of the lecture belongs to the task heads
    (`rnn_tasks.models`), so a stack of cells stays a pure encoder.
    """

    gates = 1

    def __init__(self, input_size: int, hidden_size: int, nonlinearity: Nonlinearity = "tanh"):
        if nonlinearity not in NONLINEARITIES:
            raise ValueError(
                f"nonlinearity must be one of {sorted(NONLINEARITIES)}, got {nonlinearity!r}"
            )
        self.nonlinearity = nonlinearity
        super().__init__(input_size, hidden_size)

    def recur(self, xw_t: Tensor, h: Tensor, U: Tensor | None = None) -> tuple[Tensor, Tensor]:
        U = self.U if U is None else U
        h = NONLINEARITIES[self.nonlinearity](torch.addmm(xw_t, h, U.t()))
        return h, h

    def _step_into(self, x_t: Tensor, h: Tensor, out: Tensor) -> tuple[Tensor, Tensor]:
        mm, W, U = self._products(x_t)
        a = mm.addmm_(mm.addmm(out, self.b, x_t, W), h, U)
        h = a.relu_() if self.nonlinearity == "relu" else a.tanh_()
        return h, h

    def extra_repr(self) -> str:
        return f"{super().extra_repr()}, nonlinearity={self.nonlinearity!r}"


class LSTMCell(_Cell):
    """Long short-term memory cell (Hochreiter & Schmidhuber 1997; torch's gate order).

        i_t = sigmoid(W_i x_t + U_i h_{t-1} + b_i)      input gate
        f_t = sigmoid(W_f x_t + U_f h_{t-1} + b_f)      forget gate
        g_t = tanh(W_g x_t + U_g h_{t-1} + b_g)         candidate cell
        o_t = sigmoid(W_o x_t + U_o h_{t-1} + b_o)      output gate
        c_t = f_t * c_{t-1} + i_t * g_t
        h_t = o_t * tanh(c_t)

    The state is the pair `(h, c)`. torch keeps two biases (`b_ih + b_hh`); they only ever
    appear summed, so one `b` is the same function.
    """

    gates = 4

    def initial_state(self, batch_size: int, like: Tensor) -> LSTMState:
        h = like.new_zeros(batch_size, self.hidden_size)
        return h, torch.zeros_like(h)

    def recur(
        self, xw_t: Tensor, state: LSTMState, U: Tensor | None = None
    ) -> tuple[Tensor, LSTMState]:
        h, c = state
        U = self.U if U is None else U
        i, f, g, o = torch.addmm(xw_t, h, U.t()).chunk(4, dim=-1)
        c = torch.sigmoid(f) * c + torch.sigmoid(i) * torch.tanh(g)
        h = torch.sigmoid(o) * torch.tanh(c)
        return h, (h, c)

    def _step_into(self, x_t: Tensor, state: LSTMState, out: LSTMState) -> tuple[Tensor, LSTMState]:
        (h, c), (h_out, c_out) = state, out
        H = self.hidden_size
        mm, W, U = self._products(x_t)
        a = mm.addmm_(mm.addmm(x_t.new_empty(x_t.shape[0], 4 * H), self.b, x_t, W), h, U)
        g = a[:, 2 * H : 3 * H].tanh()
        a = a.sigmoid_()  # i, f, o (the g block is not read again)
        c = torch.mul(a[:, H : 2 * H], c, out=c_out).addcmul_(a[:, :H], g)
        h = torch.tanh(c, out=h_out).mul_(a[:, 3 * H :])
        return h, (h, c)


class GRUCell(_Cell):
    """Gated recurrent unit (Cho et al. 2014; torch's gate order and bias placement).

        r_t = sigmoid(W_r x_t + U_r h_{t-1} + b_r)               reset gate
        z_t = sigmoid(W_z x_t + U_z h_{t-1} + b_z)               update gate
        n_t = tanh(W_n x_t + b_n + r_t * (U_n h_{t-1} + b_hn))   candidate
        h_t = (1 - z_t) * n_t + z_t * h_{t-1}

    `b_hn` sits inside `r_t * (...)`, so unlike the other biases it cannot be folded into
    `b`; dropping it would give a different function from `torch.nn.GRU`.
    """

    gates = 3

    def __init__(self, input_size: int, hidden_size: int) -> None:
        super().__init__(input_size, hidden_size)
        self.b_hn = nn.Parameter(torch.empty(hidden_size))
        self.reset_parameters()  # again, now that b_hn exists

    def _U_blocks(self) -> tuple[Tensor, ...]:
        return tuple(self.U.split(2 * self.hidden_size))  # r and z; n (r multiplies it)

    def recur(self, xw_t: Tensor, h: Tensor, U: Tensor | None = None) -> tuple[Tensor, Tensor]:
        H = self.hidden_size
        hw = torch.mm(h, (self.U if U is None else U).t())  # (B, 3H)
        rz = torch.sigmoid(xw_t[:, : 2 * H] + hw[:, : 2 * H])
        r, z = rz[:, :H], rz[:, H:]
        n = torch.tanh(xw_t[:, 2 * H :] + r * (hw[:, 2 * H :] + self.b_hn))
        h = n + z * (h - n)  # == (1 - z) * n + z * h
        return h, h

    def _step_into(self, x_t: Tensor, h: Tensor, out: Tensor) -> tuple[Tensor, Tensor]:
        H = self.hidden_size
        mm, W, U_rz, U_n = self._products(x_t)
        a = mm.addmm(x_t.new_empty(x_t.shape[0], 3 * H), self.b, x_t, W)
        rz = mm.addmm_(a[:, : 2 * H], h, U_rz).sigmoid_()
        hn = mm.addmm(torch.empty_like(h), self.b_hn, h, U_n)
        n = a[:, 2 * H :].addcmul_(rz[:, :H], hn).tanh_()
        h = torch.lerp(n, h, rz[:, H:], out=out)  # (1 - z) n + z h
        return h, h


CELLS: dict[str, type[_Cell]] = {"elman": ElmanCell, "lstm": LSTMCell, "gru": GRUCell}
