"""The recurrent part of the Delta RNN, version B (RFWP Eq. 12):

    y_t = z_t + R_t softmax(y_{t−1}),   R_t = R_{t−1} + β^r_t (v^r_t − R_{t−1} k^r_t) ⊗ k^r_t,

where z_t = W_t q_t comes from the delta-rule kernels (W does not depend on y). The softmax couples
every entry of y, so one program per (batch·head) holds all of R (float32) in registers.

Gradients need R_t and y_{t−1} at every step in reverse order. The forward stores the state (R, y)
at the start of every block of CK steps; the backward recomputes one block forward from its
checkpoint into a per-program scratch buffer and walks it in reverse, so memory is
O(L/CK + CK) states and resets are exact.
"""
import triton
import triton.language as tl

from .fast_weight_step import (delta_step, delta_step_backward, keep_or_zero, masked_softmax, softmax_backward,
                               weight_tile)


@triton.jit
def delta_rnn_fwd(z, rk, rv, rbeta, keep, R0, y0, out, R_out, y_out, R_ckpt, y_ckpt, L, H, NC,
                  D: tl.constexpr, BD: tl.constexpr, CK: tl.constexpr):
    bh = tl.program_id(0).to(tl.int64)
    b = bh // H
    i, _ik, m, _mk, r_rel, r_mask = weight_tile(0, D, D, BD, BD)  # square: key indices are i too
    R = tl.load(R0 + bh * D * D + r_rel, mask=r_mask, other=0.0)
    y = tl.load(y0 + bh * D + i, mask=m, other=0.0)
    for n in range(0, NC):
        tl.store(R_ckpt + (bh * NC + n) * D * D + r_rel, R, mask=r_mask)
        tl.store(y_ckpt + (bh * NC + n) * D + i, y, mask=m)
        for t in range(n * CK, tl.minimum(n * CK + CK, L)):
            kp = tl.load(keep + b * L + t)  # reset: the whole state is zeroed before step t
            R = keep_or_zero(R, kp)
            s = masked_softmax(keep_or_zero(y, kp), m)
            rk_t = tl.load(rk + (bh * L + t) * D + i, mask=m, other=0.0).to(tl.float32)
            rv_t = tl.load(rv + (bh * L + t) * D + i, mask=m, other=0.0).to(tl.float32)
            R, _ = delta_step(R, rk_t, rv_t, tl.load(rbeta + bh * L + t).to(tl.float32))
            y = tl.load(z + (bh * L + t) * D + i, mask=m, other=0.0) + tl.sum(R * s[None, :], 1)
            tl.store(out + (bh * L + t) * D + i, y, mask=m)
    tl.store(R_out + bh * D * D + r_rel, R, mask=r_mask)
    tl.store(y_out + bh * D + i, y, mask=m)


@triton.jit
def delta_rnn_bwd(rk, rv, rbeta, keep, z, R_ckpt, y_ckpt, R_scratch, y_scratch, d_out, dR_out, dy_out,
                  dz, drk, drv, drbeta, dR0, dy0, L, H, NC,
                  D: tl.constexpr, BD: tl.constexpr, CK: tl.constexpr):
    bh = tl.program_id(0).to(tl.int64)
    b = bh // H
    i, _ik, m, _mk, r_rel, r_mask = weight_tile(0, D, D, BD, BD)  # square: key indices are i too
    dR = tl.load(dR_out + bh * D * D + r_rel, mask=r_mask, other=0.0)
    dy = tl.load(dy_out + bh * D + i, mask=m, other=0.0)
    for c in range(0, NC):
        n = NC - 1 - c
        t0 = n * CK
        t1 = tl.minimum(t0 + CK, L)
        # Recompute the block forward, saving the state before each step.
        R = tl.load(R_ckpt + (bh * NC + n) * D * D + r_rel, mask=r_mask, other=0.0)
        y = tl.load(y_ckpt + (bh * NC + n) * D + i, mask=m, other=0.0)
        for t in range(t0, t1):
            tl.store(R_scratch + (bh * CK + t - t0) * D * D + r_rel, R, mask=r_mask)
            tl.store(y_scratch + (bh * CK + t - t0) * D + i, y, mask=m)
            kp = tl.load(keep + b * L + t)
            R = keep_or_zero(R, kp)
            s = masked_softmax(keep_or_zero(y, kp), m)
            rk_t = tl.load(rk + (bh * L + t) * D + i, mask=m, other=0.0).to(tl.float32)
            rv_t = tl.load(rv + (bh * L + t) * D + i, mask=m, other=0.0).to(tl.float32)
            R, _ = delta_step(R, rk_t, rv_t, tl.load(rbeta + bh * L + t).to(tl.float32))
            y = tl.load(z + (bh * L + t) * D + i, mask=m, other=0.0) + tl.sum(R * s[None, :], 1)
        tl.debug_barrier()  # the scratch written above is read below by other threads
        for j in range(0, t1 - t0):
            t = t1 - 1 - j
            kp = tl.load(keep + b * L + t)
            R_in = keep_or_zero(tl.load(R_scratch + (bh * CK + t - t0) * D * D + r_rel, mask=r_mask, other=0.0), kp)
            s = masked_softmax(keep_or_zero(tl.load(y_scratch + (bh * CK + t - t0) * D + i, mask=m, other=0.0), kp), m)
            rk_t = tl.load(rk + (bh * L + t) * D + i, mask=m, other=0.0).to(tl.float32)
            rv_t = tl.load(rv + (bh * L + t) * D + i, mask=m, other=0.0).to(tl.float32)
            rbeta_t = tl.load(rbeta + bh * L + t).to(tl.float32)
            R_t, delta = delta_step(R_in, rk_t, rv_t, rbeta_t)
            # y_t = z_t + R_t s: y_t's gradient is the output's plus what step t+1 sent back
            dy += tl.load(d_out + (bh * L + t) * D + i, mask=m, other=0.0)
            tl.store(dz + (bh * L + t) * D + i, dy, mask=m)
            dR += dy[:, None] * s[None, :]
            ds = tl.sum(R_t * dy[:, None], 0)
            dR, drk_t, drv_t, drbeta_t = delta_step_backward(dR, R_in, rk_t, delta, rbeta_t)
            tl.store(drk + (bh * L + t) * D + i, drk_t, mask=m)
            tl.store(drv + (bh * L + t) * D + i, drv_t, mask=m)
            tl.store(drbeta + bh * L + t, drbeta_t)
            dR = keep_or_zero(dR, kp)
            dy = keep_or_zero(softmax_backward(s, ds), kp)
        tl.debug_barrier()  # the next block overwrites the scratch read above
    tl.store(dR0 + bh * D * D + r_rel, dR, mask=r_mask)
    tl.store(dy0 + bh * D + i, dy, mask=m)
