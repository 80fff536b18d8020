"""The Triton kernels of `rnn_tasks.nn.fused` (imported on first use: only a GPU needs them).

Each program handles one batch row and a block of hidden units; every tensor is one step's
(B, C) rows, row stride given, unit column stride.
"""

import triton
import triton.language as tl


@triton.jit
def _tanh(x):
    # From exp (the interpreter has no libdevice); the series near 0, where 1 - e^-2|x|
    # would cancel: within 3e-7 of torch's tanh, relative.
    a = tl.abs(x)
    t = tl.exp(-2.0 * a)
    far = (1.0 - t) / (1.0 + t)
    x2 = x * x
    near = a * (1.0 + x2 * (-1.0 / 3.0 + x2 * (2.0 / 15.0 + x2 * (-17.0 / 315.0))))
    r = tl.where(a < 0.1, near, far)
    return tl.where(x < 0, -r, r)


@triton.jit
def lstm_step(
    a_ptr, sa, c_ptr, sc, h_ptr, sh, m_ptr, sm, co_ptr, sco, tc_ptr, stc, ho_ptr, sho,
    H, HAS_MASK: tl.constexpr, BLOCK: tl.constexpr,
):  # fmt: skip
    b = tl.program_id(0)
    j = tl.program_id(1) * BLOCK + tl.arange(0, BLOCK)
    ok = j < H
    a = a_ptr + b * sa + j
    i = tl.sigmoid(tl.load(a, mask=ok))
    f = tl.sigmoid(tl.load(a + H, mask=ok))
    g = _tanh(tl.load(a + 2 * H, mask=ok))
    o = tl.sigmoid(tl.load(a + 3 * H, mask=ok))
    tl.store(a, i, mask=ok)
    tl.store(a + H, f, mask=ok)
    tl.store(a + 2 * H, g, mask=ok)
    tl.store(a + 3 * H, o, mask=ok)
    c_prev = tl.load(c_ptr + b * sc + j, mask=ok)
    c = f * c_prev + i * g
    if HAS_MASK:
        real = tl.load(m_ptr + b * sm)
        c = tl.where(real, c, c_prev)
    tc = _tanh(c)
    h = o * tc
    if HAS_MASK:
        h = tl.where(real, h, tl.load(h_ptr + b * sh + j, mask=ok))
    tl.store(co_ptr + b * sco + j, c, mask=ok)
    tl.store(tc_ptr + b * stc + j, tc, mask=ok)
    tl.store(ho_ptr + b * sho + j, h, mask=ok)


@triton.jit
def lstm_step_back(
    dh_ptr, sdh, a_ptr, sa, f_ptr, sf, dc_ptr, sdc, p_ptr, sp, k_ptr, sk, n_ptr, sn,
    H, HAS_MASK: tl.constexpr, BLOCK: tl.constexpr,
):  # fmt: skip
    b = tl.program_id(0)
    j = tl.program_id(1) * BLOCK + tl.arange(0, BLOCK)
    ok = j < H
    dh = tl.load(dh_ptr + b * sdh + j, mask=ok)
    dc = tl.load(dc_ptr + b * sdc + j, mask=ok) + dh * tl.load(a_ptr + b * sa + j, mask=ok)
    p = p_ptr + b * sp + j
    tl.store(p, tl.load(p, mask=ok) * dc, mask=ok)
    tl.store(p + H, tl.load(p + H, mask=ok) * dc, mask=ok)
    tl.store(p + 2 * H, tl.load(p + 2 * H, mask=ok) * dc, mask=ok)
    tl.store(p + 3 * H, tl.load(p + 3 * H, mask=ok) * dh, mask=ok)
    if HAS_MASK:
        nxt = n_ptr + b * sn + j
        keep = tl.load(k_ptr + b * sk)
        tl.store(nxt, tl.load(nxt, mask=ok) + dh * keep, mask=ok)
    tl.store(dc_ptr + b * sdc + j, dc * tl.load(f_ptr + b * sf + j, mask=ok), mask=ok)


@triton.jit
def gru_step(
    rz_ptr, srz, n_ptr, sn, hn_ptr, shn, h_ptr, sh, m_ptr, sm, ho_ptr, sho,
    H, HAS_MASK: tl.constexpr, BLOCK: tl.constexpr,
):  # fmt: skip
    b = tl.program_id(0)
    j = tl.program_id(1) * BLOCK + tl.arange(0, BLOCK)
    ok = j < H
    rz = rz_ptr + b * srz + j
    r = tl.sigmoid(tl.load(rz, mask=ok))
    z = tl.sigmoid(tl.load(rz + H, mask=ok))
    tl.store(rz, r, mask=ok)
    tl.store(rz + H, z, mask=ok)
    n_at = n_ptr + b * sn + j
    n = _tanh(tl.load(n_at, mask=ok) + r * tl.load(hn_ptr + b * shn + j, mask=ok))
    tl.store(n_at, n, mask=ok)
    h_prev = tl.load(h_ptr + b * sh + j, mask=ok)
    # torch.lerp(n, h', z), with its two forms for accuracy on either side of 1/2
    diff = h_prev - n
    h = tl.where(z < 0.5, n + z * diff, h_prev - diff * (1.0 - z))
    if HAS_MASK:
        h = tl.where(tl.load(m_ptr + b * sm), h, h_prev)
    tl.store(ho_ptr + b * sho + j, h, mask=ok)


@triton.jit
def gru_step_back(
    dh_ptr, sdh, q_ptr, sq, z_ptr, sz, n_ptr, sn, H, BLOCK: tl.constexpr
):  # fmt: skip
    b = tl.program_id(0)
    j = tl.program_id(1) * BLOCK + tl.arange(0, BLOCK)
    ok = j < H
    dh = tl.load(dh_ptr + b * sdh + j, mask=ok)
    q = q_ptr + b * sq + j
    tl.store(q, tl.load(q, mask=ok) * dh, mask=ok)
    tl.store(q + H, tl.load(q + H, mask=ok) * dh, mask=ok)
    tl.store(q + 2 * H, tl.load(q + 2 * H, mask=ok) * dh, mask=ok)
    nxt = n_ptr + b * sn + j
    tl.store(nxt, tl.load(nxt, mask=ok) + dh * tl.load(z_ptr + b * sz + j, mask=ok), mask=ok)
