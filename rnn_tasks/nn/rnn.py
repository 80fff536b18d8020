"""Stacked, optionally bidirectional recurrent network over any of the hand-written cells.

Shapes: B batch, T time, D input features, H hidden units, L layers, K directions (1 or 2).

A drop-in for `torch.nn.RNN/LSTM/GRU`: same arguments, batch-first `(B, T, D)` by default or
seq-first `(T, B, D)` with `batch_first=False` (as torch's default), the same output layout,
the same final-state layout `(L * K, B, H)` (a pair `(h_n, c_n)` for the LSTM) in both, and
`from_torch` copies a trained torch module's weights and its layout.
"""

from __future__ import annotations

import warnings
from collections.abc import Sequence
from typing import Literal

import torch
from torch import Tensor, nn

from .cells import CELLS, NONLINEARITIES, ElmanCell, GRUCell, LSTMCell, Nonlinearity
from .dropout import locked_dropout
from .recurrence import BPTT, BPTT_MODES, unroll

CellName = Literal["elman", "lstm", "gru"]
State = Tensor | tuple[Tensor, Tensor]


class RNN(nn.Module):
    """Multi-layer recurrent network built from `ElmanCell`, `LSTMCell` or `GRUCell`.

    Args:
        input_size: features per input step, D.
        hidden_size: units per direction, H.
        num_layers: stacked layers; each reads the whole output sequence of the one below.
        cell: "elman", "lstm" or "gru".
        nonlinearity: g of the Elman cell, "tanh" or "relu" (Elman only).
        bidirectional: add a second direction per layer, read from each sequence's last
            real token back to its first; the two outputs are concatenated per step.
        dropout: dropout on the outputs of every layer but the last (as `torch.nn.RNN`).
        bptt: "manual" (hand-written backward, default) or "autograd" (reference).
        batch_first: inputs and outputs are (B, T, ...) when True (the default), (T, B, ...)
            when False, as torch's `batch_first`; the state is (L * K, B, H) either way.
        weight_drop: in training, the share of each recurrent matrix `U`'s entries zeroed
            (the rest scaled by 1 / (1 - p)), one mask per forward call for all its steps:
            DropConnect on the recurrent weights (Merity et al. 2017, AWD-LSTM).
        variational: the between-layer `dropout` draws one mask per sequence for all its
            steps (`rnn_tasks.nn.dropout.locked_dropout`) instead of one per step.
    """

    def __init__(
        self,
        input_size: int,
        hidden_size: int,
        num_layers: int = 1,
        cell: CellName = "elman",
        nonlinearity: Nonlinearity = "tanh",
        bidirectional: bool = False,
        dropout: float = 0.0,
        bptt: BPTT = "manual",
        batch_first: bool = True,
        weight_drop: float = 0.0,
        variational: bool = False,
    ) -> None:
        super().__init__()
        if cell not in CELLS:
            raise ValueError(f"cell must be one of {sorted(CELLS)}, got {cell!r}")
        if nonlinearity not in NONLINEARITIES:
            raise ValueError(
                f"nonlinearity must be one of {sorted(NONLINEARITIES)}, got {nonlinearity!r}"
            )
        if cell != "elman" and nonlinearity != "tanh":
            raise ValueError(f"nonlinearity applies to cell='elman' only, got cell={cell!r}")
        if num_layers < 1:
            raise ValueError(f"num_layers must be >= 1, got {num_layers}")
        if not 0.0 <= dropout < 1.0:
            raise ValueError(f"dropout must be in [0, 1), got {dropout}")
        if dropout and num_layers == 1:
            warnings.warn(
                f"dropout={dropout} acts between recurrent layers, so with num_layers=1 it "
                f"does nothing (as in torch.nn.RNN); drop out the inputs or outputs instead",
                stacklevel=2,
            )
        if not 0.0 <= weight_drop < 1.0:
            raise ValueError(f"weight_drop must be in [0, 1), got {weight_drop}")
        if bptt not in BPTT_MODES:
            raise ValueError(f"bptt must be one of {list(BPTT_MODES)}, got {bptt!r}")
        self.input_size, self.hidden_size, self.num_layers = input_size, hidden_size, num_layers
        self.cell, self.nonlinearity, self.bptt = cell, nonlinearity, bptt
        self.bidirectional, self.dropout = bidirectional, dropout
        self.batch_first, self.weight_drop = batch_first, weight_drop
        self.variational = variational
        self.num_directions = 2 if bidirectional else 1
        extra = {"nonlinearity": nonlinearity} if cell == "elman" else {}
        # cells[layer * K + direction], the order of torch's h_n rows.
        self.cells = nn.ModuleList(
            CELLS[cell](
                input_size if layer == 0 else hidden_size * self.num_directions,
                hidden_size,
                **extra,
            )
            for layer in range(num_layers)
            for _ in range(self.num_directions)
        )

    @property
    def output_size(self) -> int:
        return self.hidden_size * self.num_directions

    def forward(
        self, x: Tensor, lengths: Tensor | Sequence[int] | None = None, state: State | None = None
    ) -> tuple[Tensor, State]:
        """Run the whole sequence.

        Args:
            x: (B, T, D) inputs, or (T, B, D) when `batch_first=False`; right-padded (each
                sequence's padding after its last real step) when `lengths` is given.
            lengths: (B,) real lengths, each in [1, T]; padded steps leave the state
                unchanged and give zero outputs. A state given here instead, as torch's
                `rnn(x, hx)` passes it (a 3-D tensor, or a pair of them), is taken as `state`,
                so code written for torch's modules calls this one unchanged.
            state: initial state in torch's layout, `(L * K, B, H)` or `(h_0, c_0)` for
                the LSTM; zeros when None.

        Returns:
            output (B, T, H * K), or (T, B, H * K) when `batch_first=False`, and the final
            state in torch's layout: for each sequence, the forward direction's state at its
            last real token and the backward direction's at its first.
        """
        if state is None and _is_state(lengths):  # torch's call, rnn(x, hx)
            lengths, state = None, lengths
        self._check_input(x)
        # The kernels index time-major (T, B, D) and keep their input's memory order, so
        # batch-first data is seen through a transposed view and seq-first data as it is.
        layer_in = x.transpose(0, 1) if self.batch_first else x  # (T, B, D)
        T, B, _ = layer_in.shape
        mask = self._mask(lengths, B, T, x.device)
        h0, c0 = self._initial_state(state, B, x)
        K, H = self.num_directions, self.hidden_size
        # Without autograd both directions write their halves of one buffer, in the input's
        # memory order. With it, torch.cat joins them: cat's backward only slices the
        # gradient, where writes into a shared buffer would copy all of it once per direction.
        fill = K > 1 and not self._needs_grad(x, h0, c0)
        h_n, c_n = [], []
        for layer in range(self.num_layers):
            if layer > 0 and self.dropout > 0 and self.variational:
                layer_in = locked_dropout(layer_in, self.dropout, self.training, time_dim=0)
            elif layer > 0 and self.dropout > 0:
                layer_in = nn.functional.dropout(layer_in, self.dropout, self.training)
            out = None
            if fill and self.batch_first:
                out = layer_in.new_empty(B, T, K * H).transpose(0, 1)  # (T, B, H*K) view
            elif fill:
                out = layer_in.new_empty(T, B, K * H)
            outputs = []
            for direction in range(K):
                k = layer * K + direction
                s0 = h0[k] if c0 is None else (h0[k], c0[k])
                half = None if out is None else out[..., direction * H : (direction + 1) * H]
                U = self.cells[k].U
                if self.training and self.weight_drop:
                    U = nn.functional.dropout(U, self.weight_drop, training=True)
                S, final = unroll(
                    self.cells[k], layer_in, s0, mask, direction == 1, self.bptt, out=half, U=U
                )
                outputs.append(S)  # (T, B, H)
                if c0 is None:
                    h_n.append(final)
                else:
                    h_n.append(final[0])
                    c_n.append(final[1])
            if out is None:
                out = outputs[0] if K == 1 else torch.cat(outputs, -1)
            layer_in = out  # (T, B, H*K)
        output = layer_in if mask is None else layer_in * mask
        h_n = torch.stack(h_n)  # (L*K, B, H)
        if self.batch_first:
            output = output.transpose(0, 1)  # (B, T, H*K)
        return output, (h_n if c0 is None else (h_n, torch.stack(c_n)))

    def step(self, x_t: Tensor, state: State | None = None) -> tuple[Tensor, State]:
        """One time step of a unidirectional network, for generation.

        Args:
            x_t: (B, D) the input at this step.
            state: torch-layout state from the previous step, or None for zeros.

        Returns:
            the top layer's output (B, H) and the new state (same layout).
        """
        if self.bidirectional:
            raise ValueError(
                "step() needs a unidirectional RNN: a backward direction "
                "cannot run before the sequence has ended"
            )
        if x_t.dim() != 2 or x_t.shape[-1] != self.input_size:
            raise ValueError(f"x_t must be (batch, {self.input_size}), got {tuple(x_t.shape)}")
        h0, c0 = self._initial_state(state, x_t.shape[0], x_t)
        if not torch.is_grad_enabled():  # generation: each layer writes its rows of the new state
            return self._step_no_grad(x_t, h0, c0)
        h_n, c_n = [], []
        inp = x_t
        for layer, cell in enumerate(self.cells):
            if layer > 0 and self.dropout > 0:
                inp = nn.functional.dropout(inp, self.dropout, self.training)
            inp, s = cell(inp, h0[layer] if c0 is None else (h0[layer], c0[layer]))
            if c0 is None:
                h_n.append(s)
            else:
                h_n.append(s[0])
                c_n.append(s[1])
        h_n = torch.stack(h_n)
        return inp, (h_n if c0 is None else (h_n, torch.stack(c_n)))

    def _step_no_grad(self, x_t: Tensor, h0: Tensor, c0: Tensor | None):
        h_n = torch.empty_like(h0, memory_format=torch.contiguous_format)  # (L, B, H)
        c_n = None if c0 is None else torch.empty_like(h_n)
        inp = x_t
        for layer, cell in enumerate(self.cells):
            if layer > 0 and self.dropout > 0:
                inp = nn.functional.dropout(inp, self.dropout, self.training)
            if c_n is None:
                inp, _ = cell._step_into(inp, h0[layer], h_n[layer])
            else:
                inp, _ = cell._step_into(inp, (h0[layer], c0[layer]), (h_n[layer], c_n[layer]))
        return inp, (h_n if c_n is None else (h_n, c_n))

    def _needs_grad(self, x: Tensor, h0: Tensor, c0: Tensor | None) -> bool:
        if not torch.is_grad_enabled():
            return False
        tensors = (x, h0, *(() if c0 is None else (c0,)), *self.parameters())
        return any(t.requires_grad for t in tensors)

    def flatten_parameters(self) -> None:
        """torch's modules pack their weights into one buffer for cuDNN; these keep one
        tensor per weight, so there is nothing to do (present so that torch code runs)."""

    # -- input checks --------------------------------------------------------------------

    def _check_input(self, x: Tensor) -> None:
        if isinstance(x, nn.utils.rnn.PackedSequence):
            raise ValueError(
                "PackedSequence input is not supported: pass the padded batch and its "
                "lengths, rnn(x, lengths, state) (padded steps are skipped exactly as packing does)"
            )
        layout = "(batch, time, features)" if self.batch_first else "(time, batch, features)"
        if x.dim() != 3:
            raise ValueError(
                f"x must be 3-D {layout} (batch_first={self.batch_first}), "
                f"got shape {tuple(x.shape)}"
            )
        if x.shape[-1] != self.input_size:
            raise ValueError(
                f"x has {x.shape[-1]} features per step, but input_size={self.input_size}"
            )
        if x.shape[1 if self.batch_first else 0] == 0:
            raise ValueError(f"x has no time steps (T = 0; x is {layout})")
        weight = self.cells[0].W
        if x.dtype != weight.dtype:
            raise ValueError(
                f"x is {x.dtype} but the weights are {weight.dtype}: convert one "
                f"(e.g. rnn.to(x.dtype) or x.to({weight.dtype}))"
            )

    def _mask(self, lengths, B: int, T: int, device) -> Tensor | None:
        if lengths is None:
            return None
        lengths = torch.as_tensor(lengths)
        if lengths.shape != (B,) or lengths.is_floating_point() or lengths.dtype == torch.bool:
            raise ValueError(
                f"lengths must be {B} integers (one per sequence), got {tuple(lengths.shape)} "
                f"of {lengths.dtype}"
            )
        if torch.compiler.is_exporting():
            # The checks and the shortcut below read the lengths' values, which an exported
            # program does not know: it masks every time, and trusts the lengths given.
            return (torch.arange(T, device=device)[:, None] < lengths.to(device)).unsqueeze(-1)
        lo, hi = int(lengths.min()), int(lengths.max())
        if lo < 1 or hi > T:
            raise ValueError(f"lengths must lie in [1, {T}] (the padded length), got [{lo}, {hi}]")
        if lo == T:
            return None  # nothing padded: skip the masking work
        steps = torch.arange(T, device=device).unsqueeze(1)
        return (steps < lengths.to(device)).unsqueeze(-1)  # (T, B, 1)

    def _initial_state(self, state, B: int, like: Tensor) -> tuple[Tensor, Tensor | None]:
        rows = self.num_layers * self.num_directions
        want = (rows, B, self.hidden_size)
        if state is None:
            h0 = like.new_zeros(want)
            return h0, (torch.zeros_like(h0) if self.cell == "lstm" else None)
        if self.cell == "lstm":
            if not (isinstance(state, tuple) and len(state) == 2):
                raise ValueError("state for cell='lstm' must be a pair (h_0, c_0)")
            h0, c0 = state
        else:
            if not isinstance(state, Tensor):
                raise ValueError(f"state for cell={self.cell!r} must be one tensor h_0")
            h0, c0 = state, None
        for name, s in (("h_0", h0), ("c_0", c0)):
            if s is not None and tuple(s.shape) != want:
                raise ValueError(f"{name} must have shape {want}, got {tuple(s.shape)}")
        return h0, c0

    # -- torch interop --------------------------------------------------------------------

    @classmethod
    def from_torch(cls, module: nn.RNNBase, bptt: BPTT = "manual") -> RNN:
        """An equivalent hand-written RNN with the weights of a `torch.nn.RNN/LSTM/GRU`.

        The result keeps `module.batch_first` (seq-first for torch's default), so it can
        replace the module in code written for it. A module without biases (`bias=False`)
        gets zero biases that are not trained, so it stays bias-free when trained further.
        """
        kinds = {nn.RNN: "elman", nn.LSTM: "lstm", nn.GRU: "gru"}
        cell = kinds.get(type(module))
        if cell is None:
            raise ValueError(
                f"module must be torch.nn.RNN, LSTM or GRU, got {type(module).__name__}"
            )
        if getattr(module, "proj_size", 0):
            raise ValueError("LSTM projections (proj_size > 0) are not supported")
        nonlinearity = "relu" if getattr(module, "nonlinearity", "tanh") == "relu" else "tanh"
        ours = cls(
            module.input_size,
            module.hidden_size,
            module.num_layers,
            cell,
            nonlinearity,
            module.bidirectional,
            module.dropout,
            bptt,
            batch_first=module.batch_first,
        )
        ours.to(module.weight_ih_l0.device, module.weight_ih_l0.dtype)
        H = module.hidden_size
        with torch.no_grad():
            for k, c in enumerate(ours.cells):
                layer, direction = divmod(k, ours.num_directions)
                suffix = f"l{layer}" + ("_reverse" if direction else "")
                w_ih = getattr(module, f"weight_ih_{suffix}")
                w_hh = getattr(module, f"weight_hh_{suffix}")
                b_ih = getattr(module, f"bias_ih_{suffix}", None)
                b_hh = getattr(module, f"bias_hh_{suffix}", None)
                b_ih = torch.zeros_like(w_ih[:, 0]) if b_ih is None else b_ih
                b_hh = torch.zeros_like(w_hh[:, 0]) if b_hh is None else b_hh
                c.W.copy_(w_ih)
                c.U.copy_(w_hh)
                if isinstance(c, GRUCell):  # b_hn stays apart: it is multiplied by r
                    c.b.copy_(b_ih)
                    c.b[: 2 * H] += b_hh[: 2 * H]
                    c.b_hn.copy_(b_hh[2 * H :])
                else:
                    c.b.copy_(b_ih + b_hh)
        if not module.bias:
            for c in ours.cells:
                c.b.requires_grad_(False)
                if isinstance(c, GRUCell):
                    c.b_hn.requires_grad_(False)
        return ours

    def extra_repr(self) -> str:
        return (
            f"{self.input_size}, {self.hidden_size}, num_layers={self.num_layers}, "
            f"cell={self.cell!r}, bidirectional={self.bidirectional}, "
            f"dropout={self.dropout}, bptt={self.bptt!r}, batch_first={self.batch_first}"
            + (f", weight_drop={self.weight_drop}" if self.weight_drop else "")
            + (", variational=True" if self.variational else "")
        )


def _is_state(value) -> bool:
    """Whether `value` is a state `(L * K, B, H)` or a pair of them, not lengths (B,)."""
    if isinstance(value, tuple):
        return len(value) == 2 and all(isinstance(v, Tensor) and v.dim() == 3 for v in value)
    return isinstance(value, Tensor) and value.dim() == 3


__all__ = ["RNN", "ElmanCell", "LSTMCell", "GRUCell"]
