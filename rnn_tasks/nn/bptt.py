"""Backpropagation through time written out by hand, one `autograd.Function` per cell type.

Shapes (time-major inside this module, so each step's slice is contiguous):
T time, B batch, H hidden; `xw` is the input side `W x_t + b` for every step, (T, B, G*H).

The forward pass stores each step's activations. The backward pass walks back in time:
the error reaching `h_t` is the error from the output at `t` plus the error flowing back
from step `t+1`; the error at each step's pre-activation is kept, and the weight gradient
`dL/dU = sum_t delta_t^T h_{t-1}` is one matrix product over the whole sequence after the
loop. Everything that does not depend on the running error (the nonlinearities'
derivatives, products of stored gates) is computed for all steps at once before the loop,
so the loop itself is a handful of (B, H)-sized operations and one matmul per step.

`mask` (T, B, 1), bool, marks real tokens; on a padded step the state is carried over
unchanged, so a right-padded batch run in reverse starts each sequence at its own last
token. `mask=None` means every step is real and skips the masking work.

The plain autograd unroll over `cell.recur` (`rnn_tasks.nn.recurrence`) is the reference
these functions are tested against.
"""

from __future__ import annotations

import torch
from torch import Tensor
from torch.autograd import Function


def _order(T: int, reverse: bool) -> range:
    return range(T - 1, -1, -1) if reverse else range(T)


def _previous_states(S: Tensor, h0: Tensor, reverse: bool) -> Tensor:
    """The state each step started from, (T, B, H): h0, then the states shifted by one."""
    if reverse:
        return torch.cat((S[1:], h0.unsqueeze(0)))
    return torch.cat((h0.unsqueeze(0), S[:-1]))


class ElmanBPTT(Function):
    """`S_t = g(xw_t + h_{t-1} U^T)`; returns all states S (T, B, H)."""

    @staticmethod
    def forward(
        ctx, xw: Tensor, h0: Tensor, U: Tensor, mask: Tensor | None, reverse: bool, relu: bool
    ) -> Tensor:
        T = xw.shape[0]
        S = torch.empty_like(xw)
        act_ = torch.relu_ if relu else torch.tanh_
        Ut = U.t()
        h = h0
        for t in _order(T, reverse):
            if mask is None:
                h = act_(torch.addmm(xw[t], h, Ut, out=S[t]))
            else:
                h = torch.where(mask[t], act_(torch.addmm(xw[t], h, Ut)), h, out=S[t])
        ctx.save_for_backward(S, h0, U, mask)
        ctx.reverse, ctx.relu = reverse, relu
        return S

    @staticmethod
    def backward(ctx, dS: Tensor):
        S, h0, U, mask = ctx.saved_tensors
        gprime = (S > 0).to(S.dtype) if ctx.relu else 1 - S * S  # g'(pre) from g(pre)
        if mask is not None:
            gprime = gprime * mask
            keep = (~mask).to(S.dtype)  # padded steps pass the error straight through
        delta = torch.empty_like(S)  # error at each step's pre-activation
        carry = torch.zeros_like(h0)
        for t in _order(S.shape[0], not ctx.reverse):
            dh = dS[t] + carry
            torch.mul(dh, gprime[t], out=delta[t])
            if mask is None:
                carry = delta[t] @ U
            else:
                carry = torch.addmm(dh * keep[t], delta[t], U)
        H = S.shape[-1]
        hprev = _previous_states(S, h0, ctx.reverse)
        dU = delta.view(-1, H).t() @ hprev.view(-1, H)
        return delta, carry, dU, None, None, None


class LSTMBPTT(Function):
    """LSTM steps over `xw` in the internal gate order (o, i, f, g).

    This order puts the three sigmoid gates side by side (one sigmoid per step) and, in the
    backward pass, the three gates whose error comes from `dc` side by side (one multiply).
    `rnn_tasks.nn.recurrence` permutes torch's (i, f, g, o) weights into it.
    Returns all hidden states S (T, B, H) and the final cell state c_n (B, H).
    """

    @staticmethod
    def forward(
        ctx, xw: Tensor, h0: Tensor, c0: Tensor, U: Tensor, mask: Tensor | None, reverse: bool
    ) -> tuple[Tensor, Tensor]:
        T, B, H4 = xw.shape
        H = H4 // 4
        gates = torch.empty_like(xw)  # activated o, i, f, g
        C = xw.new_empty(T, B, H)
        tanhC = torch.empty_like(C)
        S = torch.empty_like(C)
        Ut = U.t()
        h, c = h0, c0
        for t in _order(T, reverse):
            a = torch.addmm(xw[t], h, Ut, out=gates[t])
            torch.sigmoid_(a[:, : 3 * H])
            torch.tanh_(a[:, 3 * H :])
            o, i, f, g = a[:, :H], a[:, H : 2 * H], a[:, 2 * H : 3 * H], a[:, 3 * H :]
            c_new = torch.mul(f, c, out=C[t]).addcmul_(i, g)
            h_new = torch.mul(o, torch.tanh(c_new, out=tanhC[t]), out=S[t])
            if mask is not None:
                h_new = torch.where(mask[t], h_new, h, out=S[t])
                c_new = torch.where(mask[t], c_new, c, out=C[t])
            h, c = h_new, c_new
        ctx.save_for_backward(gates, C, tanhC, S, h0, c0, U, mask)
        ctx.reverse = reverse
        return S, c.clone()

    @staticmethod
    def backward(ctx, dS: Tensor, dc_n: Tensor):
        gates, C, tanhC, S, h0, c0, U, mask = ctx.saved_tensors
        T, B, H = S.shape
        o, i, f, g = gates.split(H, dim=-1)
        cprev = _previous_states(C, c0, ctx.reverse)
        # d(pre-activation) = dh * P[:, :, :H]  (o)  and  dc * P[:, :, H:]  (i, f, g)
        P = torch.cat(
            (tanhC * o * (1 - o), g * i * (1 - i), cprev * f * (1 - f), i * (1 - g * g)), -1
        )
        A = o * (1 - tanhC * tanhC)  # dc_t += dh_t * A_t
        F = f
        if mask is not None:
            P, A = P * mask, A * mask
            F = torch.where(mask, f, 1.0)  # the cell state passes padded steps unchanged
            keep = (~mask).to(S.dtype)
        delta = torch.empty_like(gates)
        carry_h = torch.zeros_like(h0)
        carry_c = dc_n
        for t in _order(T, not ctx.reverse):
            dh = dS[t] + carry_h
            dc = torch.addcmul(carry_c, dh, A[t])
            d, p = delta[t], P[t]
            torch.mul(dh, p[:, :H], out=d[:, :H])
            torch.mul(dc.unsqueeze(1), p[:, H:].view(B, 3, H), out=d[:, H:].view(B, 3, H))
            carry_h = d @ U if mask is None else torch.addmm(dh * keep[t], d, U)
            carry_c = dc * F[t]
        hprev = _previous_states(S, h0, ctx.reverse)
        dU = delta.view(-1, 4 * H).t() @ hprev.view(-1, H)
        return delta, carry_h, carry_c, dU, None, None


class GRUBPTT(Function):
    """GRU steps; `b_hn` enters inside the reset gate's product. Returns S (T, B, H)."""

    @staticmethod
    def forward(
        ctx, xw: Tensor, h0: Tensor, U: Tensor, b_hn: Tensor, mask: Tensor | None, reverse: bool
    ) -> Tensor:
        T, B, H3 = xw.shape
        H = H3 // 3
        hw = torch.empty_like(xw)  # U h_{t-1} (+ b_hn on the n block)
        rz = xw.new_empty(T, B, 2 * H)
        n = xw.new_empty(T, B, H)
        S = torch.empty_like(n)
        Ut = U.t()
        bias = torch.cat((b_hn.new_zeros(2 * H), b_hn))
        h = h0
        for t in _order(T, reverse):
            hw_t = torch.addmm(bias, h, Ut, out=hw[t])
            rz_t = torch.sigmoid_(torch.add(xw[t, :, : 2 * H], hw_t[:, : 2 * H], out=rz[t]))
            n_t = torch.addcmul(xw[t, :, 2 * H :], rz_t[:, :H], hw_t[:, 2 * H :], out=n[t])
            n_t = torch.tanh_(n_t)
            h_new = torch.addcmul(n_t, rz_t[:, H:], h - n_t, out=S[t])  # (1 - z) n + z h
            if mask is not None:
                h_new = torch.where(mask[t], h_new, h, out=S[t])
            h = h_new
        ctx.save_for_backward(hw, rz, n, S, h0, U, mask)
        ctx.reverse = reverse
        return S

    @staticmethod
    def backward(ctx, dS: Tensor):
        hw, rz, n, S, h0, U, mask = ctx.saved_tensors
        T, B, H = S.shape
        r, z = rz[..., :H], rz[..., H:]
        hprev = _previous_states(S, h0, ctx.reverse)
        # Per unit of dh_t: d(pre_n) = Qn, d(pre_z) = Qz, d(pre_r) = Qn * Qr.
        Qn = (1 - z) * (1 - n * n)
        Qz = (hprev - n) * z * (1 - z)
        Qrn = Qn * hw[..., 2 * H :] * r * (1 - r)
        Z = z
        if mask is not None:
            Qn, Qz, Qrn = Qn * mask, Qz * mask, Qrn * mask
            Z = torch.where(mask, z, 1.0)  # padded steps pass the error straight through
        Qx = torch.cat((Qrn, Qz, Qn), -1)  # error at xw = dh * Qx
        Qh = torch.cat((Qrn, Qz, Qn * r), -1)  # error at U h + b_hn = dh * Qh
        dxw = torch.empty_like(hw)
        dhw = torch.empty_like(hw)
        carry = torch.zeros_like(h0)
        for t in _order(T, not ctx.reverse):
            dh = (dS[t] + carry).unsqueeze(1)  # (B, 1, H)
            torch.mul(dh, Qx[t].view(B, 3, H), out=dxw[t].view(B, 3, H))
            torch.mul(dh, Qh[t].view(B, 3, H), out=dhw[t].view(B, 3, H))
            carry = torch.addmm(dh.squeeze(1) * Z[t], dhw[t], U)
        dU = dhw.view(-1, 3 * H).t() @ hprev.view(-1, H)
        db_hn = dhw[..., 2 * H :].sum((0, 1))
        return dxw, carry, dU, db_hn, None, None
