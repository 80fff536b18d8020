"""One GPU kernel for each step's gate arithmetic (Triton), from the same equations.

Shapes: B batch, H hidden. Every tensor here is one step's (B, C) rows: any row stride,
unit column stride.

Between two matrix products a step of the loops in `rnn_tasks.nn.bptt` does its gate
arithmetic as several torch operations (an LSTM's forward step: sigmoid, tanh, sigmoid,
mul, addcmul, tanh, mul, and a `where` per mask), each one pass over (B, H) numbers and one
kernel launch. On a GPU each such kernel is a few microseconds of mostly waiting, so these
kernels do a step's arithmetic in one pass:

    lstm_step       i, f, g, o = sigma, sigma, tanh, sigma (in place); c = f c' + i g;
                    h = o tanh(c); a padded row keeps (h', c')
    lstm_step_back  dc += dh A; P_ifg *= dc; P_o *= dh; nxt += dh keep; dc *= F
    gru_step        r, z = sigma (in place); n = tanh(n + r hn) (in place); h = lerp(n, h', z);
                    a padded row keeps h'
    gru_step_back   Q_rzn *= dh; nxt += dh Z

with the names of the torch-op loops, which stay as they are: the reference these kernels are
tested against (tests/test_nn_fused.py runs them through Triton's interpreter on the CPU)
and the path taken wherever these cannot run. They serve float32 CUDA tensors when Triton
is installed (it comes with torch's CUDA builds), in loops replayed from CUDA graphs
(`rnn_tasks.nn.graphs`): the configuration measured against cuDNN; a loop launched from
Python keeps the torch ops. `set_fused_steps(False)` or `RNN_TASKS_FUSED_STEPS=0` keeps
the torch-op loops everywhere. The results differ from the torch ops'
by float32 rounding only (tanh is computed from exp here, within 3e-7 of torch's).
"""

from __future__ import annotations

import functools
import importlib.util
import os

import torch
from torch import Tensor

ENV = "RNN_TASKS_FUSED_STEPS"

_enabled: bool | None = None  # None: read ENV at first use


def set_fused_steps(enabled: bool) -> None:
    """Do each step's gate arithmetic in one Triton kernel on GPUs (default: on)."""
    global _enabled
    _enabled = bool(enabled)


def fused_steps() -> bool:
    """Whether the loops on float32 CUDA tensors use these kernels (where Triton is)."""
    global _enabled
    if _enabled is None:
        value = os.environ.get(ENV, "1").strip().lower()
        if value not in ("0", "1", "true", "false", "on", "off"):
            raise ValueError(f"${ENV} must be 1 or 0 (true/false, on/off), got {value!r}")
        _enabled = value in ("1", "true", "on")
    return _enabled


def usable(*rows: Tensor | None) -> bool:
    """Whether the kernels can take these tensors (None entries are ignored)."""
    ts = [t for t in rows if t is not None]
    return (
        all(_device_ok(t) and t.dtype == torch.float32 and t.stride(-1) == 1 for t in ts)
        and fused_steps()
        and _have_triton()
    )


@functools.cache
def _have_triton() -> bool:
    # torch's CUDA builds bring Triton; its CPU builds do not
    return importlib.util.find_spec("triton") is not None


@functools.cache
def _kernels():
    from . import fused_kernels  # triton's import costs ~0.2 s: only when a GPU step needs it

    return fused_kernels


def _device_ok(t: Tensor) -> bool:
    return t.is_cuda  # tests/test_nn_fused.py also lets CPU tensors through, interpreted


def _block(H: int) -> int:
    return min(256, max(16, 1 << (H - 1).bit_length()))  # a power of two, as Triton wants


def _grid(B: int, H: int, block: int) -> tuple[int, int]:
    return (B, -(-H // block))


def lstm_step(a, c_prev, h_prev, mask, c_out, tc_out, h_out) -> None:
    """One LSTM step after `a += h' U^T`: a (B, 4H) pre-activations become i, f, g, o;
    `c_out`, `tc_out`, `h_out` (B, H) get c, tanh(c), h. `c_out` may be `c_prev`."""
    B, H = h_out.shape
    block = _block(H)
    m = mask if mask is not None else a  # any pointer: not read without a mask
    _kernels().lstm_step[_grid(B, H, block)](
        a, a.stride(0), c_prev, c_prev.stride(0), h_prev, h_prev.stride(0),
        m, m.stride(0), c_out, c_out.stride(0), tc_out, tc_out.stride(0),
        h_out, h_out.stride(0), H, HAS_MASK=mask is not None, BLOCK=block,
    )  # fmt: skip


def lstm_step_back(dh, A, F, dc, P, keep, nxt) -> None:
    """One backward LSTM step before `nxt += P U`: dc (B, H) += dh A, P's i, f, g blocks
    (B, 4H) times dc and its o block times dh, `nxt += dh keep` (padded rows), dc *= F."""
    B, H = dh.shape
    block = _block(H)
    k = keep if keep is not None else dh
    _kernels().lstm_step_back[_grid(B, H, block)](
        dh, dh.stride(0), A, A.stride(0), F, F.stride(0), dc, dc.stride(0), P, P.stride(0),
        k, k.stride(0), nxt, nxt.stride(0), H, HAS_MASK=keep is not None, BLOCK=block,
    )  # fmt: skip


def gru_step(rz, n, hn, h_prev, mask, h_out) -> None:
    """One GRU step after `rz += h' U_rz^T` and `hn = b_hn + h' U_n^T`: rz (B, 2H) become
    r, z; n (B, H), the input side, becomes tanh(n + r hn); h_out gets (1 - z) n + z h'."""
    B, H = h_out.shape
    block = _block(H)
    m = mask if mask is not None else rz
    _kernels().gru_step[_grid(B, H, block)](
        rz, rz.stride(0), n, n.stride(0), hn, hn.stride(0), h_prev, h_prev.stride(0),
        m, m.stride(0), h_out, h_out.stride(0), H, HAS_MASK=mask is not None, BLOCK=block,
    )  # fmt: skip


def gru_step_back(dh, Q, Z, nxt) -> None:
    """One backward GRU step before `nxt += Q U`: Q's (B, 3H) blocks times dh, nxt += dh Z."""
    B, H = dh.shape
    block = _block(H)
    _kernels().gru_step_back[_grid(B, H, block)](
        dh, dh.stride(0), Q, Q.stride(0), Z, Z.stride(0), nxt, nxt.stride(0), H, BLOCK=block
    )
