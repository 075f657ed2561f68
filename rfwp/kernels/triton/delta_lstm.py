"""The recurrent cell of the Delta LSTM, version D (RFWP Eqs. 36-40, Table 1). For each gate
g ∈ (u, f, o), with z_g = W_g q_g from the delta-rule kernels and s = softmax(y_{t−1}):

    R_g,t = R_g,t−1 + β^r_g (v^r_g − R_g,t−1 k^r_g) ⊗ k^r_g
    u = z_u + R_u s,   f = σ(z_f + R_f s),   o = σ(z_o + R_o s)
    c_t = f ⊙ c_{t−1} + (1 − f) ⊙ u,   y_t = c_t ⊙ o.

One program per (batch·head) holds the three R_g (float32) in registers. As in delta_rnn.py, the
forward stores (R, c, y) every CK steps and the backward recomputes each block of CK steps from its
checkpoint into a scratch buffer, then walks it in reverse.

Layouts: z, k^r, v^r (BH, 3, L, D); β^r (BH, 3, L); R (BH, 3, D, D); checkpoints of (c, y) (…, 2, D).
"""
import triton
import triton.language as tl

from .fast_weight_step import (delta_step, delta_step_backward, keep_or_zero, masked_softmax, softmax_backward,
                               weight_tile)


@triton.jit
def gate_forward(R, s, z, rk, rv, rbeta, bh, g, t, L, i, m, D: tl.constexpr):
    """Gate g's fast weight update (Eq. 8) and pre-activation z_g + R_g s; also what the backward needs."""
    row = (bh * 3 + g) * L + t
    rk_t = tl.load(rk + row * D + i, mask=m, other=0.0).to(tl.float32)
    rv_t = tl.load(rv + row * D + i, mask=m, other=0.0).to(tl.float32)
    rbeta_t = tl.load(rbeta + row).to(tl.float32)
    R, delta = delta_step(R, rk_t, rv_t, rbeta_t)
    a = tl.load(z + row * D + i, mask=m, other=0.0) + tl.sum(R * s[None, :], 1)
    return R, a, rk_t, delta, rbeta_t


@triton.jit
def gate_backward(dR, da, s, R_in, rk_t, delta, rbeta_t, dz, drk, drv, drbeta, bh, g, t, L, i, m,
                  D: tl.constexpr):
    """Backward of ``gate_forward`` given the pre-activation's gradient da; stores the input gradients
    and returns the gradient of the gate's fast weight before the step."""
    row = (bh * 3 + g) * L + t
    tl.store(dz + row * D + i, da, mask=m)
    dR = dR + da[:, None] * s[None, :]
    dR, drk_t, drv_t, drbeta_t = delta_step_backward(dR, R_in, rk_t, delta, rbeta_t)
    tl.store(drk + row * D + i, drk_t, mask=m)
    tl.store(drv + row * D + i, drv_t, mask=m)
    tl.store(drbeta + row, drbeta_t)
    return dR


@triton.jit
def load_gates(ptr, index, r_rel, r_mask, D: tl.constexpr):
    """The three D×D matrices (gates u, f, o) stored at ``ptr`` for ``index`` (a batch·head or a slot)."""
    base = ptr + index * 3 * D * D
    return (tl.load(base + r_rel, mask=r_mask, other=0.0), tl.load(base + D * D + r_rel, mask=r_mask, other=0.0),
            tl.load(base + 2 * D * D + r_rel, mask=r_mask, other=0.0))


@triton.jit
def store_gates(ptr, index, R_u, R_f, R_o, r_rel, r_mask, D: tl.constexpr):
    base = ptr + index * 3 * D * D
    tl.store(base + r_rel, R_u, mask=r_mask)
    tl.store(base + D * D + r_rel, R_f, mask=r_mask)
    tl.store(base + 2 * D * D + r_rel, R_o, mask=r_mask)


@triton.jit
def cell_forward(R_u, R_f, R_o, c, y, kp, z, rk, rv, rbeta, bh, t, L, i, m, D: tl.constexpr):
    """One step of Eqs. 36-40 from the state before it; kp = 0 zeroes that state first (a reset)."""
    s = masked_softmax(keep_or_zero(y, kp), m)
    R_u, a_u, _, _, _ = gate_forward(keep_or_zero(R_u, kp), s, z, rk, rv, rbeta, bh, 0, t, L, i, m, D)
    R_f, a_f, _, _, _ = gate_forward(keep_or_zero(R_f, kp), s, z, rk, rv, rbeta, bh, 1, t, L, i, m, D)
    R_o, a_o, _, _, _ = gate_forward(keep_or_zero(R_o, kp), s, z, rk, rv, rbeta, bh, 2, t, L, i, m, D)
    f = tl.sigmoid(a_f)
    c = f * keep_or_zero(c, kp) + (1.0 - f) * a_u  # version D: u = z_u + R_u s without a squashing
    y = c * tl.sigmoid(a_o)
    return R_u, R_f, R_o, c, y


@triton.jit
def delta_lstm_fwd(z, rk, rv, rbeta, keep, R0, c0, y0, out, R_out, c_out, y_out, R_ckpt, cy_ckpt, L, H, NC,
                   D: tl.constexpr, BD: tl.constexpr, CK: tl.constexpr):
    bh = tl.program_id(0).to(tl.int64)
    b = bh // H
    i, _ik, m, _mk, r_rel, r_mask = weight_tile(0, D, D, BD, BD)  # square: key indices are i too
    R_u, R_f, R_o = load_gates(R0, bh, r_rel, r_mask, D)
    c = tl.load(c0 + bh * D + i, mask=m, other=0.0)
    y = tl.load(y0 + bh * D + i, mask=m, other=0.0)
    for n in range(0, NC):
        ckpt = bh * NC + n
        store_gates(R_ckpt, ckpt, R_u, R_f, R_o, r_rel, r_mask, D)
        tl.store(cy_ckpt + (ckpt * 2 + 0) * D + i, c, mask=m)
        tl.store(cy_ckpt + (ckpt * 2 + 1) * D + i, y, mask=m)
        for t in range(n * CK, tl.minimum(n * CK + CK, L)):
            kp = tl.load(keep + b * L + t)  # reset: the whole state is zeroed before step t
            R_u, R_f, R_o, c, y = cell_forward(R_u, R_f, R_o, c, y, kp, z, rk, rv, rbeta, bh, t, L, i, m, D)
            tl.store(out + (bh * L + t) * D + i, y, mask=m)
    store_gates(R_out, bh, R_u, R_f, R_o, r_rel, r_mask, D)
    tl.store(c_out + bh * D + i, c, mask=m)
    tl.store(y_out + bh * D + i, y, mask=m)


@triton.jit
def delta_lstm_bwd(rk, rv, rbeta, keep, z, R_ckpt, cy_ckpt, R_scratch, cy_scratch, d_out, dR_out, dc_out,
                   dy_out, dz, drk, drv, drbeta, dR0, dc0, dy0, L, H, NC,
                   D: tl.constexpr, BD: tl.constexpr, CK: tl.constexpr):
    bh = tl.program_id(0).to(tl.int64)
    b = bh // H
    i, _ik, m, _mk, r_rel, r_mask = weight_tile(0, D, D, BD, BD)  # square: key indices are i too
    dR_u, dR_f, dR_o = load_gates(dR_out, bh, r_rel, r_mask, D)
    dc = tl.load(dc_out + bh * D + i, mask=m, other=0.0)
    dy = tl.load(dy_out + bh * D + i, mask=m, other=0.0)
    for blk in range(0, NC):
        n = NC - 1 - blk
        t0 = n * CK
        t1 = tl.minimum(t0 + CK, L)
        # Recompute the block forward, saving the state before each step.
        ckpt = bh * NC + n
        R_u, R_f, R_o = load_gates(R_ckpt, ckpt, r_rel, r_mask, D)
        c = tl.load(cy_ckpt + (ckpt * 2 + 0) * D + i, mask=m, other=0.0)
        y = tl.load(cy_ckpt + (ckpt * 2 + 1) * D + i, mask=m, other=0.0)
        for t in range(t0, t1):
            slot = bh * CK + t - t0
            store_gates(R_scratch, slot, R_u, R_f, R_o, r_rel, r_mask, D)
            tl.store(cy_scratch + (slot * 2 + 0) * D + i, c, mask=m)
            tl.store(cy_scratch + (slot * 2 + 1) * D + i, y, mask=m)
            kp = tl.load(keep + b * L + t)
            R_u, R_f, R_o, c, y = cell_forward(R_u, R_f, R_o, c, y, kp, z, rk, rv, rbeta, bh, t, L, i, m, D)
        tl.debug_barrier()  # the scratch written above is read below by other threads
        for j in range(0, t1 - t0):
            t = t1 - 1 - j
            slot = bh * CK + t - t0
            kp = tl.load(keep + b * L + t)
            Ru_in, Rf_in, Ro_in = load_gates(R_scratch, slot, r_rel, r_mask, D)
            Ru_in, Rf_in, Ro_in = keep_or_zero(Ru_in, kp), keep_or_zero(Rf_in, kp), keep_or_zero(Ro_in, kp)
            c_in = keep_or_zero(tl.load(cy_scratch + (slot * 2 + 0) * D + i, mask=m, other=0.0), kp)
            s = masked_softmax(keep_or_zero(tl.load(cy_scratch + (slot * 2 + 1) * D + i, mask=m, other=0.0), kp), m)
            Ru_t, a_u, rk_u, delta_u, rbeta_u = gate_forward(Ru_in, s, z, rk, rv, rbeta, bh, 0, t, L, i, m, D)
            Rf_t, a_f, rk_f, delta_f, rbeta_f = gate_forward(Rf_in, s, z, rk, rv, rbeta, bh, 1, t, L, i, m, D)
            Ro_t, a_o, rk_o, delta_o, rbeta_o = gate_forward(Ro_in, s, z, rk, rv, rbeta, bh, 2, t, L, i, m, D)
            f = tl.sigmoid(a_f)
            o = tl.sigmoid(a_o)
            c_t = f * c_in + (1.0 - f) * a_u
            # y_t = c_t ⊙ o: y_t's gradient is the output's plus what step t+1 sent back
            dy += tl.load(d_out + (bh * L + t) * D + i, mask=m, other=0.0)
            dc += dy * o
            da_o = dy * c_t * o * (1.0 - o)
            da_f = dc * (c_in - a_u) * f * (1.0 - f)
            da_u = dc * (1.0 - f)
            ds = (tl.sum(Ru_t * da_u[:, None], 0) + tl.sum(Rf_t * da_f[:, None], 0)
                  + tl.sum(Ro_t * da_o[:, None], 0))
            dR_u = keep_or_zero(gate_backward(dR_u, da_u, s, Ru_in, rk_u, delta_u, rbeta_u, dz, drk, drv, drbeta,
                                              bh, 0, t, L, i, m, D), kp)
            dR_f = keep_or_zero(gate_backward(dR_f, da_f, s, Rf_in, rk_f, delta_f, rbeta_f, dz, drk, drv, drbeta,
                                              bh, 1, t, L, i, m, D), kp)
            dR_o = keep_or_zero(gate_backward(dR_o, da_o, s, Ro_in, rk_o, delta_o, rbeta_o, dz, drk, drv, drbeta,
                                              bh, 2, t, L, i, m, D), kp)
            dc = keep_or_zero(dc * f, kp)
            dy = keep_or_zero(softmax_backward(s, ds), kp)
        tl.debug_barrier()  # the next block overwrites the scratch read above
    store_gates(dR0, bh, dR_u, dR_f, dR_o, r_rel, r_mask, D)
    tl.store(dc0 + bh * D + i, dc, mask=m)
    tl.store(dy0 + bh * D + i, dy, mask=m)
