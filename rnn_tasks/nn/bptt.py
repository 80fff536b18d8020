"""One layer-direction of each cell type, with backpropagation through time written by hand.

Shapes: T time, B batch, D input, H hidden, G gates. Tensors are indexed time-major,
`x` (T, B, D), so that `x[t]` is one step; their memory may be time-major or batch-first
(the transposed view of a contiguous (B, T, D) batch, as `RNN` passes it). Every buffer is
allocated in its input's memory order, so batch-first data is never transposed in memory:
the whole-sequence matmuls read it as (B*T, D) rows, and a step's slice is B rows T apart.

Each cell has a forward kernel (`elman_forward`, `lstm_forward`, `gru_forward`), used as is
when no gradient is needed, and an `autograd.Function` that runs the same kernel, keeps
what its backward needs and walks back in time:

- The input side `W x_t + b` of every step is one matmul before the loop, written into a
  buffer that the loop then overwrites in place with the gates (no per-step allocation).
- The products go through a `rnn_tasks.nn.matmul` backend (torch's BLAS, oneDNN, or int8
  for a quantised model), which prepares each weight once per call in the layout its
  library wants (for BLAS, `U^T` contiguous for the loop's `h U^T`, `U` as stored for the
  backward loop's `delta U`). A backward pass uses the backend its forward pass used.
- Backward: the error reaching `h_t` is the error from the output at `t` plus the error
  flowing back from step `t+1`; it is accumulated in place into a copy of the output
  error, so a step costs a few (B, H)-sized operations and one matmul. Everything that
  does not depend on the running error (the nonlinearities' derivatives, products of
  stored gates) is computed for all steps at once before the loop, and the weight and
  input gradients are a few matmuls over the whole sequence after it.

Each time loop is a function of its own (`_lstm_loop`, `_lstm_back_loop`, ...) called
through `graphs.run`: on a GPU it is recorded as a CUDA graph and replayed (`graphs`), and
in the graph its gate arithmetic is one kernel per step (`fused`); elsewhere it runs as
written.

`mask` (T, B, 1), bool, marks real tokens; on a padded step the state is carried over
unchanged, so a right-padded batch run in reverse starts each sequence at its own last
token. Steps where every row is real skip the masking work; `mask=None` means all are.

The Functions return the final state as an output of its own (not a view of S), so its
gradient arrives as a (B, H) tensor rather than through a (T, B, H) scatter.

The plain autograd unroll over `cell.recur` (`rnn_tasks.nn.recurrence`) is the reference
these functions are tested against.
"""

from __future__ import annotations

import torch
from torch import Tensor
from torch.autograd import Function

from . import fused, graphs
from .matmul import Backend, backend_for, cached

# -- layout and shared pieces ------------------------------------------------------------


def _order(T: int, reverse: bool) -> range:
    return range(T - 1, -1, -1) if reverse else range(T)


def _batch_first(t: Tensor) -> bool:
    """Whether a (T, B, ...) tensor's memory is ordered (B, T, ...)."""
    return t.stride(0) < t.stride(1)


def _new(like: Tensor, C: int) -> Tensor:
    """An uninitialised (T, B, C) tensor in the memory order of `like` (not a view)."""
    T, B = like.shape[:2]
    strides = (C, T * C, 1) if _batch_first(like) else (B * C, C, 1)
    return torch.empty_strided((T, B, C), strides, dtype=like.dtype, device=like.device)


def _rows(t: Tensor, batch_first: bool) -> Tensor:
    """(T, B, C) as 2-D rows (B*T of them if `batch_first`, else T*B), C; copies if needed."""
    return (t.transpose(0, 1) if batch_first else t).reshape(-1, t.shape[-1])


def _mask_rows(mask: Tensor | None, T: int, every_step: bool = False) -> list[Tensor | None]:
    """Each step's (B, 1) mask, or None where every row is real (no masking work).

    `every_step`: each step's mask even where it is all real (the same result), so that the
    loop does not read the mask on the host: a CUDA graph's loop must not depend on values.
    """
    if mask is None:
        return [None] * T
    if every_step:
        return list(mask.unbind(0))
    full = mask.reshape(T, -1).all(1).tolist()
    return [None if f else m for f, m in zip(full, mask.unbind(0), strict=True)]


def _project(x: Tensor, W: Tensor, b: Tensor, mm: Backend, out: Tensor | None = None) -> Tensor:
    """`x W^T + b` for every step in one matmul, (T, B, D) -> (T, B, G*H), into `out`.

    `out` (default: new, in x's memory order) may be a strided view, e.g. one direction's
    half of a bidirectional layer's output.
    """
    out = _new(x, W.shape[0]) if out is None else out
    bf = _batch_first(out)
    target = (out.transpose(0, 1) if bf else out).view(-1, out.shape[-1])  # a view, not a copy
    mm.linear(_rows(x, bf), W, b, out=target)
    return out


def _weight(mm: Backend, M: Tensor, rows: int, keep_for_backward: bool):
    """`M` prepared for the loop's products: once per call when training (a cached copy
    could outlive an optimizer step unseen by autograd), cached across calls otherwise."""
    return mm.prepare(M, rows) if keep_for_backward else cached(mm, M, rows)


def _output_error(dS: Tensor, dh_n: Tensor, S: Tensor, h0: Tensor, reverse: bool):
    """A private copy of the output error to accumulate into, and dL/dh0 (zeros so far).

    D (T, B, H) starts as dL/dS_t (plus dL/dh_n on the last step) and collects, step by
    step in the backward loop, what flows back from later steps (`_chain`).
    """
    D = torch.empty_like(S).copy_(dS)  # in S's memory order
    D[0 if reverse else -1].add_(dh_n)
    dh0 = torch.zeros_like(h0, memory_format=torch.contiguous_format)
    return D, dh0


def _chain(D: Tensor, dh0: Tensor, reverse: bool):
    """(rows, nxt): `rows[t]` is step t's error in D, `nxt[t]` the row of the step that ran
    before t (dh0 for the first), where the error at t flows back to."""
    rows = D.unbind(0)
    nxt = (*rows[1:], dh0) if reverse else (dh0, *rows[:-1])
    return rows, nxt


def _recurrent_grad(delta: Tensor, S: Tensor, h0: Tensor, reverse: bool) -> Tensor:
    """dL/dU = sum_t delta_t^T h_{t-1}, as matmuls over views of whole sequences.

    Pairing each step with the state before it is a shift of the rows by one step: B rows
    in time-major memory, one row in batch-first memory, where the shift also pairs the
    first step of each sequence with the last step of the one before; those B - 1 pairs
    are taken out again with one small matmul.
    """
    T, B, GH = delta.shape
    first = T - 1 if reverse else 0  # the step that starts from h0
    dU = delta[first].t() @ h0
    if T == 1:
        return dU
    bf = _batch_first(delta)
    d2, s2 = _rows(delta, bf), _rows(S, bf)
    k = 1 if bf else B
    if reverse:  # h_{t-1} is S[t + 1]
        dU.addmm_(d2[:-k].t(), s2[k:])
        if bf and B > 1:
            dU.addmm_(delta[T - 1, :-1].t(), S[0, 1:], alpha=-1)
    else:
        dU.addmm_(d2[k:].t(), s2[:-k])
        if bf and B > 1:
            dU.addmm_(delta[0, 1:].t(), S[T - 1, :-1], alpha=-1)
    return dU


def _input_grads(needs, delta: Tensor, x: Tensor, W: Tensor, mm: Backend):
    """Gradients of `x W^T + b` given the error `delta` at its output: (dx, dW, db)."""
    T, B, _ = delta.shape
    bf = _batch_first(delta)
    d2 = _rows(delta, bf)
    dx = dW = db = None
    if needs[0]:
        dx2 = mm.linear(d2, W.t())
        dx = dx2.view(B, T, -1).transpose(0, 1) if bf else dx2.view(T, B, -1)
    if needs[1]:
        dW = d2.t() @ _rows(x, bf)
    if needs[2]:
        db = d2.sum(0)
    return dx, dW, db


def _shifted(S: Tensor, reverse: bool):
    """(first, rest, prev): the step that starts from h0, the other steps, and S at the
    steps they start from, so that h_{t-1} is h0 at `first` and `prev` at `rest`."""
    if reverse:
        return S.shape[0] - 1, slice(0, -1), S[1:]
    return 0, slice(1, None), S[:-1]


# -- Elman -------------------------------------------------------------------------------


def elman_forward(
    x: Tensor,
    W: Tensor,
    b: Tensor,
    U: Tensor,
    h0: Tensor,
    mask: Tensor | None = None,
    reverse: bool = False,
    relu: bool = False,
    out: Tensor | None = None,
    keep_for_backward: bool = False,
    mm: Backend | None = None,
) -> tuple[Tensor, Tensor]:
    """`S_t = g(W x_t + b + U h_{t-1})`; returns all states S (T, B, H) and the final one.

    S is computed in place over the projected input, in `out` when given.
    """
    mm = mm or backend_for(x)
    S = _project(x, W, b, mm, out)
    P = _weight(mm, U, h0.shape[0], keep_for_backward)
    (h,) = graphs.run(
        _elman_loop, (S, P, h0, mask), changed=(0,), reverse=reverse, relu=relu, mm=mm
    )
    return S, h


def _elman_loop(S, P, h0, mask, *, graphed: bool, reverse: bool, relu: bool, mm: Backend):
    """The recurrence over S, which holds `W x_t + b` and becomes the states, in place."""
    act_ = torch.relu_ if relu else torch.tanh_
    rows, masks = S.unbind(0), _mask_rows(mask, S.shape[0], graphed)
    h = h0
    for t in _order(S.shape[0], reverse):
        a = mm.addmm_(rows[t], h, P)
        h = act_(a) if masks[t] is None else torch.where(masks[t], act_(a), h, out=a)
    return (h,)


class ElmanBPTT(Function):
    """`elman_forward` with its hand-written backward; returns S (T, B, H) and h_n."""

    @staticmethod
    def forward(ctx, x, W, b, U, h0, mask, reverse: bool, relu: bool):
        mm = backend_for(x)
        S, h_n = elman_forward(x, W, b, U, h0, mask, reverse, relu, keep_for_backward=True, mm=mm)
        ctx.save_for_backward(x, W, U, h0, S, mask)
        ctx.reverse, ctx.relu, ctx.mm = reverse, relu, mm
        return S, h_n.clone()

    @staticmethod
    def backward(ctx, dS: Tensor, dh_n: Tensor):
        x, W, U, h0, S, mask = ctx.saved_tensors
        if ctx.relu:  # g'(pre) from g(pre)
            gprime = (S > 0).to(S.dtype)
        else:
            gprime = torch.addcmul(S.new_ones(()), S, S, value=-1)  # 1 - S^2 in one pass
        keep = None
        if mask is not None:
            gprime.mul_(mask)
            keep = (~mask).to(S.dtype)  # padded steps pass the error straight through
        delta, dh0 = _output_error(dS, dh_n, S, h0, ctx.reverse)
        mm = ctx.mm
        P = mm.prepare(U.t(), h0.shape[0])  # for delta U
        inputs = (delta, dh0, gprime, keep, P, mask)
        graphs.run(_elman_back_loop, inputs, changed=(0, 1), reverse=ctx.reverse, mm=mm)
        dx, dW, db = _input_grads(ctx.needs_input_grad, delta, x, W, mm)
        dU = _recurrent_grad(delta, S, h0, ctx.reverse) if ctx.needs_input_grad[3] else None
        return dx, dW, db, dU, dh0, None, None, None


def _elman_back_loop(D, dh0, gprime, keep, P, mask, *, graphed, reverse, mm):
    """Back through time: D's rows become the pre-activation errors delta_t, in place."""
    T = D.shape[0]
    rows, nxt = _chain(D, dh0, reverse)
    g_rows, masks = gprime.unbind(0), _mask_rows(mask, T, graphed)
    for t in _order(T, not reverse):
        dh = rows[t]
        if masks[t] is not None:
            nxt[t].addcmul_(dh, keep[t])
        mm.addmm_(nxt[t], dh.mul_(g_rows[t]), P)  # dh becomes delta_t, the pre-activation error
    return ()


# -- LSTM --------------------------------------------------------------------------------


def lstm_forward(
    x: Tensor,
    W: Tensor,
    b: Tensor,
    U: Tensor,
    h0: Tensor,
    c0: Tensor,
    mask: Tensor | None = None,
    reverse: bool = False,
    out: Tensor | None = None,
    keep_for_backward: bool = False,
    mm: Backend | None = None,
):
    """LSTM over `x` (torch's gate order i, f, g, o); returns S (T, B, H), h_n, c_n.

    With `keep_for_backward`, also the activated gates (T, B, 4H), all cell states C and
    their tanh (T, B, H) each.
    """
    H = h0.shape[-1]
    mm = mm or backend_for(x)
    gates = _project(x, W, b, mm)  # (T, B, 4H) pre-activations, activated in place
    P = _weight(mm, U, h0.shape[0], keep_for_backward)
    S = _new(x, H) if out is None else out
    C, tanhC = (_new(x, H), _new(x, H)) if keep_for_backward else (None, None)
    h, c = graphs.run(
        _lstm_loop,
        (gates, P, h0, c0, mask),
        (S, C, tanhC),
        changed=(0,) if keep_for_backward else (),
        reverse=reverse,
        mm=mm,
        fuse=fused.fused_steps(),  # an option, so a graph is recorded per choice
    )
    if keep_for_backward:
        return S, h, c, (gates, C, tanhC)
    return S, h, c


def _lstm_loop(gates, P, h0, c0, mask, S, C, tanhC, *, graphed, reverse, mm, fuse):
    """The recurrence: gates (pre-activations) activated in place, states into S, and the
    cell states and their tanh into C and tanhC when given (for backward)."""
    T, B, H = S.shape
    keep_for_backward = C is not None
    if keep_for_backward:
        c_rows, tc_rows = C.unbind(0), tanhC.unbind(0)
    else:  # one running cell state and one scratch row, reused by every step
        c_run = c0.clone(memory_format=torch.contiguous_format)
        tc_rows = [gates.new_empty(B, H)] * T
    # Per-step views made once, in C++, instead of slicing in the loop.
    a_rows, if_rows = gates.unbind(0), gates[..., : 2 * H].unbind(0)
    i_rows, f_rows, g_rows, o_rows = (v.unbind(0) for v in gates.split(H, dim=-1))
    s_rows, masks = S.unbind(0), _mask_rows(mask, T, graphed)
    fuse = fuse and graphed and fused.usable(gates, h0, c0, S, C)
    h, c = h0, (c0 if keep_for_backward else c_run)
    for t in _order(T, reverse):
        mm.addmm_(a_rows[t], h, P)
        if fuse:  # the same arithmetic in one kernel
            c_new = c_rows[t] if keep_for_backward else c_run
            fused.lstm_step(a_rows[t], c, h, masks[t], c_new, tc_rows[t], s_rows[t])
            h, c = s_rows[t], c_new
            continue
        torch.sigmoid_(if_rows[t])  # i and f side by side: one call
        torch.tanh_(g_rows[t])
        torch.sigmoid_(o_rows[t])
        i, f, g, o, m = i_rows[t], f_rows[t], g_rows[t], o_rows[t], masks[t]
        if keep_for_backward:
            c_new = torch.mul(f, c, out=c_rows[t]).addcmul_(i, g)
            if m is not None:
                c_new = torch.where(m, c_new, c, out=c_new)
        elif m is None:
            c_new = c_run.mul_(f).addcmul_(i, g)
        else:
            c_new = torch.where(m, torch.mul(f, c_run).addcmul_(i, g), c_run, out=c_run)
        h_new = torch.mul(o, torch.tanh(c_new, out=tc_rows[t]), out=s_rows[t])
        if m is not None:
            h_new = torch.where(m, h_new, h, out=h_new)
        h, c = h_new, c_new
    return h, c


class LSTMBPTT(Function):
    """`lstm_forward` with its hand-written backward; returns S (T, B, H), h_n and c_n."""

    @staticmethod
    def forward(ctx, x, W, b, U, h0, c0, mask, reverse: bool):
        mm = backend_for(x)
        S, h_n, c_n, (gates, C, tanhC) = lstm_forward(
            x, W, b, U, h0, c0, mask, reverse, keep_for_backward=True, mm=mm
        )
        ctx.save_for_backward(x, W, U, h0, c0, S, gates, C, tanhC, mask)
        ctx.reverse, ctx.mm = reverse, mm
        return S, h_n.clone(), c_n.clone()

    @staticmethod
    def backward(ctx, dS: Tensor, dh_n: Tensor, dc_n: Tensor):
        x, W, U, h0, c0, S, gates, C, tanhC, mask = ctx.saved_tensors
        T, B, H = S.shape
        i, f, g, o = gates.split(H, dim=-1)
        # d(pre-activation) = dc * P[..., :3H]  (i, f, g)  and  dh * P[..., 3H:]  (o), with
        # P = (g i (1 - i), c_{t-1} f (1 - f), i (1 - g^2), tanh(c) o (1 - o)), built in place.
        P = torch.empty_like(gates)
        Pi, Pf, Pg, Po = P.split(H, dim=-1)
        torch.addcmul(i, i, i, value=-1, out=Pi).mul_(g)
        torch.addcmul(f, f, f, value=-1, out=Pf)
        first, rest, prev = _shifted(C, ctx.reverse)
        Pf[first].mul_(c0)
        Pf[rest].mul_(prev)
        torch.sub(i, torch.mul(g, g, out=Pg).mul_(i), out=Pg)
        torch.addcmul(o, o, o, value=-1, out=Po).mul_(tanhC)
        A = torch.addcmul(o, o, tanhC.square(), value=-1)  # dc_t += dh_t * o (1 - tanh^2 c)
        F, keep = f, None
        if mask is not None:
            P.mul_(mask)
            A.mul_(mask)
            F = torch.where(mask, f, 1.0)  # the cell state passes padded steps unchanged
            keep = (~mask).to(S.dtype)
        D, dh0 = _output_error(dS, dh_n, S, h0, ctx.reverse)
        dc = torch.clone(dc_n, memory_format=torch.contiguous_format)  # running dL/dc_t
        mm = ctx.mm
        PU = mm.prepare(U.t(), B)  # for delta U
        inputs = (D, dh0, dc, P, A, F, keep, PU, mask)
        graphs.run(
            _lstm_back_loop,
            inputs,
            changed=(1, 2, 3),
            reverse=ctx.reverse,
            mm=mm,
            fuse=fused.fused_steps(),
        )
        delta = P
        needs = ctx.needs_input_grad
        dx, dW, db = _input_grads(needs, delta, x, W, mm)
        dU = _recurrent_grad(delta, S, h0, ctx.reverse) if needs[3] else None
        return dx, dW, db, dU, dh0, dc, None, None


def _lstm_back_loop(D, dh0, dc, P, A, F, keep, PU, mask, *, graphed, reverse, mm, fuse):
    """Back through time. P[t] is read once, at step t, so the errors at the
    pre-activations (delta) overwrite it in place; dc is the running dL/dc_t."""
    T, B, H = D.shape
    rows, nxt = _chain(D, dh0, reverse)
    p_rows, po_rows = P.unbind(0), P[..., 3 * H :].unbind(0)
    p3_rows = P[..., : 3 * H].view(T, B, 3, H).unbind(0)
    a_rows, f_rows, masks = A.unbind(0), F.unbind(0), _mask_rows(mask, T, graphed)
    fuse = fuse and graphed and fused.usable(D, dh0, dc, P, A, F)
    for t in _order(T, not reverse):
        dh = rows[t]
        if fuse:  # the arithmetic around the product in one kernel
            k = None if masks[t] is None else keep[t]
            fused.lstm_step_back(dh, a_rows[t], f_rows[t], dc, p_rows[t], k, nxt[t])
            mm.addmm_(nxt[t], p_rows[t], PU)
            continue
        dc.addcmul_(dh, a_rows[t])
        p3_rows[t].mul_(dc.unsqueeze(1))
        po_rows[t].mul_(dh)
        if masks[t] is not None:
            nxt[t].addcmul_(dh, keep[t])
        mm.addmm_(nxt[t], p_rows[t], PU)
        dc.mul_(f_rows[t])
    return ()


# -- GRU ---------------------------------------------------------------------------------


def gru_forward(
    x: Tensor,
    W: Tensor,
    b: Tensor,
    U: Tensor,
    b_hn: Tensor,
    h0: Tensor,
    mask: Tensor | None = None,
    reverse: bool = False,
    out: Tensor | None = None,
    keep_for_backward: bool = False,
    mm: Backend | None = None,
):
    """GRU over `x`; returns S (T, B, H) and h_n.

    With `keep_for_backward`, also the activated gates r, z, n (T, B, 3H) and
    `U_n h + b_hn` of every step (T, B, H).
    """
    B, H = h0.shape
    mm = mm or backend_for(x)
    gates = _project(x, W, b, mm)  # (T, B, 3H) input side, overwritten in place with r, z, n
    P_rz, P_n = (_weight(mm, U_, B, keep_for_backward) for U_ in U.split(2 * H))
    S = _new(x, H) if out is None else out
    # U_n h + b_hn stays apart (r multiplies it): kept for backward, or one scratch row.
    HN = _new(x, H) if keep_for_backward else None
    (h,) = graphs.run(
        _gru_loop,
        (gates, P_rz, P_n, b_hn, h0, mask),
        (S, HN),
        changed=(0,) if keep_for_backward else (),
        reverse=reverse,
        mm=mm,
        fuse=fused.fused_steps(),
    )
    if keep_for_backward:
        return S, h, (gates, HN)
    return S, h


def _gru_loop(gates, P_rz, P_n, b_hn, h0, mask, S, HN, *, graphed, reverse, mm, fuse):
    """The recurrence: gates (input side) become r, z, n in place, states go into S, and
    `U_n h + b_hn` of every step into HN when given (for backward)."""
    T, B, H = S.shape
    if HN is None:  # one scratch row for every step
        HN = gates.new_empty(1, B, H).expand(T, -1, -1)
    # Per-step views made once, in C++, instead of slicing in the loop.
    rz_rows, n_rows = gates[..., : 2 * H].unbind(0), gates[..., 2 * H :].unbind(0)
    r_rows, z_rows = gates[..., :H].unbind(0), gates[..., H : 2 * H].unbind(0)
    hn_rows, s_rows, masks = HN.unbind(0), S.unbind(0), _mask_rows(mask, T, graphed)
    fuse = fuse and graphed and fused.usable(gates, h0, S, HN)
    h = h0
    for t in _order(T, reverse):
        if fuse:  # the products, then the arithmetic in one kernel
            mm.addmm_(rz_rows[t], h, P_rz)
            hn = mm.addmm(hn_rows[t], b_hn, h, P_n)
            fused.gru_step(rz_rows[t], n_rows[t], hn, h, masks[t], s_rows[t])
            h = s_rows[t]
            continue
        torch.sigmoid_(mm.addmm_(rz_rows[t], h, P_rz))
        hn = mm.addmm(hn_rows[t], b_hn, h, P_n)
        n = torch.tanh_(n_rows[t].addcmul_(r_rows[t], hn))
        h_new = torch.lerp(n, h, z_rows[t], out=s_rows[t])  # (1 - z) n + z h
        if masks[t] is not None:
            h_new = torch.where(masks[t], h_new, h, out=h_new)
        h = h_new
    return (h,)


class GRUBPTT(Function):
    """`gru_forward` with its hand-written backward; returns S (T, B, H) and h_n."""

    @staticmethod
    def forward(ctx, x, W, b, U, b_hn, h0, mask, reverse: bool):
        mm = backend_for(x)
        S, h_n, (gates, HN) = gru_forward(
            x, W, b, U, b_hn, h0, mask, reverse, keep_for_backward=True, mm=mm
        )
        ctx.save_for_backward(x, W, U, h0, S, gates, HN, mask)
        ctx.reverse, ctx.mm = reverse, mm
        return S, h_n.clone()

    @staticmethod
    def backward(ctx, dS: Tensor, dh_n: Tensor):
        x, W, U, h0, S, gates, HN, mask = ctx.saved_tensors
        T, B, H = S.shape
        r, z, n = gates.split(H, dim=-1)
        # Per unit of dh_t, the error at `U h + b_hn` is dh * Q with Q = (Qr, Qz, Qn r):
        #   Qn = (1 - z)(1 - n^2), Qz = (h_{t-1} - n) z (1 - z), Qr = Qn (U_n h + b_hn) r (1 - r);
        # the error at the input side `W x + b` is the same with Qn for the n block.
        Qn = torch.addcmul(z.new_ones(()), n, n, value=-1)
        Qn.addcmul_(Qn, z, value=-1)
        Q = torch.empty_like(gates)
        Qr, Qz, Qnr = Q.split(H, dim=-1)
        torch.addcmul(r, r, r, value=-1, out=Qr).mul_(HN).mul_(Qn)
        torch.addcmul(z, z, z, value=-1, out=Qz)
        first, rest, prev = _shifted(S, ctx.reverse)
        Qz[first].mul_(h0 - n[first])
        Qz[rest].mul_(prev - n[rest])
        torch.mul(Qn, r, out=Qnr)
        Z = z
        if mask is not None:
            Q.mul_(mask)
            Qn.mul_(mask)
            Z = torch.where(mask, z, 1.0)  # padded steps pass the error straight through
        D, dh0 = _output_error(dS, dh_n, S, h0, ctx.reverse)
        mm = ctx.mm
        PU = mm.prepare(U.t(), B)  # for delta U
        graphs.run(
            _gru_back_loop,
            (D, dh0, Q, Z, PU),
            changed=(0, 1, 2),
            reverse=ctx.reverse,
            mm=mm,
            fuse=fused.fused_steps(),
        )
        needs = ctx.needs_input_grad
        dU = _recurrent_grad(Q, S, h0, ctx.reverse) if needs[3] else None
        db_hn = Q[..., 2 * H :].sum((0, 1)) if needs[4] else None
        # Now the error at the input side: its r and z blocks are Q's, its n block is
        # dh * Qn, which needs only each step's dh: one operation after the loop.
        torch.mul(D, Qn, out=Qnr)
        dx, dW, db = _input_grads(needs, Q, x, W, mm)
        return dx, dW, db, dU, db_hn, dh0, None, None


def _gru_back_loop(D, dh0, Q, Z, PU, *, graphed, reverse, mm, fuse):
    """Back through time. Q[t] is read once, at step t, so dL/d(U h + b_hn) overwrites it
    in place; D's rows collect the error at each state."""
    T, B, H = D.shape
    rows, nxt = _chain(D, dh0, reverse)
    q_rows, q3_rows, z_rows = Q.unbind(0), Q.view(T, B, 3, H).unbind(0), Z.unbind(0)
    fuse = fuse and graphed and fused.usable(D, dh0, Q, Z)
    for t in _order(T, not reverse):
        dh = rows[t]
        if fuse:
            fused.gru_step_back(dh, q_rows[t], z_rows[t], nxt[t])
            mm.addmm_(nxt[t], q_rows[t], PU)
            continue
        q3_rows[t].mul_(dh.unsqueeze(1))
        nxt[t].addcmul_(dh, z_rows[t])
        mm.addmm_(nxt[t], q_rows[t], PU)
    return ()
