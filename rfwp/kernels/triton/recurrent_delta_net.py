"""The Recurrent Delta Net (RFWP Sec. 3.2, Eqs. 15-18) with the softmax key map of the authors' code.
With h = tanh(y_{t−1}) and the slow recurrent weights R_q, R_k, R_v, r_β of the head:

    q_t = softmax(q_t + R_q h),  k_t = softmax(k_t + R_k h),  v_t = v_t + R_v h,  β_t = σ(β_t + r_β·h),
    W_t = W_{t−1} + β_t (v_t − W_{t−1} k_t) ⊗ k_t,   y_t = W_t q_t.

Keys, values and rates depend on y_{t−1}, so the whole recurrence runs in one program per
(batch·head), with W (float32) and the head's slow weights in registers. As in delta_rnn.py, the
forward stores (W, y) every CK steps and the backward recomputes each block of CK steps from its
checkpoint into a scratch buffer, then walks it in reverse. The kernel returns the gradients of the
pre-activations; the caller turns them into the slow weights' gradients (sums of outer products with h).

Layouts: q, k (BH, L, DK), v (BH, L, DV), β (BH, L); R_q, R_k (H, DK, DV), R_v (H, DV, DV), r_β (H, DV).
"""
import triton
import triton.language as tl

from .fast_weight_step import (delta_step, delta_step_backward, keep_or_zero, masked_softmax, softmax_backward,
                               tanh, weight_tile)


@triton.jit
def rdn_step(W, y, kp, q, k, v, beta, Rq, Rk, Rv, rbeta, bh, t, L, ik, iv, mk, mv,
             DK: tl.constexpr, DV: tl.constexpr):
    """One step from (W_{t−1}, y_{t−1}); kp = 0 resets them. Returns W_t, y_t and what the backward needs."""
    W_in = keep_or_zero(W, kp)
    h = tanh(keep_or_zero(y, kp))
    q_t = masked_softmax(tl.load(q + (bh * L + t) * DK + ik, mask=mk, other=0.0).to(tl.float32)
                         + tl.sum(Rq * h[None, :], 1), mk)
    k_t = masked_softmax(tl.load(k + (bh * L + t) * DK + ik, mask=mk, other=0.0).to(tl.float32)
                         + tl.sum(Rk * h[None, :], 1), mk)
    v_t = tl.load(v + (bh * L + t) * DV + iv, mask=mv, other=0.0).to(tl.float32) + tl.sum(Rv * h[None, :], 1)
    beta_t = tl.sigmoid(tl.load(beta + bh * L + t).to(tl.float32) + tl.sum(rbeta * h, 0))
    W_t, delta = delta_step(W_in, k_t, v_t, beta_t)
    return W_t, tl.sum(W_t * q_t[None, :], 1), W_in, h, q_t, k_t, delta, beta_t


@triton.jit
def load_slow_weights(Rq, Rk, Rv, rbeta, head, ik, iv, mk, mv, DK: tl.constexpr, DV: tl.constexpr):
    kv_mask = mk[:, None] & mv[None, :]
    Rq_h = tl.load(Rq + head * DK * DV + ik[:, None] * DV + iv[None, :], mask=kv_mask, other=0.0).to(tl.float32)
    Rk_h = tl.load(Rk + head * DK * DV + ik[:, None] * DV + iv[None, :], mask=kv_mask, other=0.0).to(tl.float32)
    Rv_h = tl.load(Rv + head * DV * DV + iv[:, None] * DV + iv[None, :], mask=mv[:, None] & mv[None, :],
                   other=0.0).to(tl.float32)
    rbeta_h = tl.load(rbeta + head * DV + iv, mask=mv, other=0.0).to(tl.float32)
    return Rq_h, Rk_h, Rv_h, rbeta_h


@triton.jit
def rdn_fwd(q, k, v, beta, Rq, Rk, Rv, rbeta, keep, W0, y0, out, W_out, y_out, W_ckpt, y_ckpt, L, H, NC,
            DK: tl.constexpr, DV: tl.constexpr, BK: tl.constexpr, BV: tl.constexpr, CK: tl.constexpr):
    bh = tl.program_id(0).to(tl.int64)
    b = bh // H
    iv, ik, mv, mk, w_rel, w_mask = weight_tile(0, DV, DK, BV, BK)
    Rq_h, Rk_h, Rv_h, rbeta_h = load_slow_weights(Rq, Rk, Rv, rbeta, bh % H, ik, iv, mk, mv, DK, DV)
    W = tl.load(W0 + bh * DV * DK + w_rel, mask=w_mask, other=0.0)
    y = tl.load(y0 + bh * DV + iv, mask=mv, other=0.0)
    for n in range(0, NC):
        tl.store(W_ckpt + (bh * NC + n) * DV * DK + w_rel, W, mask=w_mask)
        tl.store(y_ckpt + (bh * NC + n) * DV + iv, y, mask=mv)
        for t in range(n * CK, tl.minimum(n * CK + CK, L)):
            kp = tl.load(keep + b * L + t)  # reset: the whole state is zeroed before step t
            W, y, _, _, _, _, _, _ = rdn_step(W, y, kp, q, k, v, beta, Rq_h, Rk_h, Rv_h, rbeta_h,
                                              bh, t, L, ik, iv, mk, mv, DK, DV)
            tl.store(out + (bh * L + t) * DV + iv, y, mask=mv)
    tl.store(W_out + bh * DV * DK + w_rel, W, mask=w_mask)
    tl.store(y_out + bh * DV + iv, y, mask=mv)


@triton.jit
def rdn_bwd(q, k, v, beta, Rq, Rk, Rv, rbeta, keep, W_ckpt, y_ckpt, W_scratch, y_scratch, d_out, dW_out, dy_out,
            dq, dk, dv, dbeta, dW0, dy0, L, H, NC,
            DK: tl.constexpr, DV: tl.constexpr, BK: tl.constexpr, BV: tl.constexpr, CK: tl.constexpr):
    bh = tl.program_id(0).to(tl.int64)
    b = bh // H
    iv, ik, mv, mk, w_rel, w_mask = weight_tile(0, DV, DK, BV, BK)
    Rq_h, Rk_h, Rv_h, rbeta_h = load_slow_weights(Rq, Rk, Rv, rbeta, bh % H, ik, iv, mk, mv, DK, DV)
    dW = tl.load(dW_out + bh * DV * DK + w_rel, mask=w_mask, other=0.0)
    dy = tl.load(dy_out + bh * DV + iv, mask=mv, other=0.0)
    for c in range(0, NC):
        n = NC - 1 - c
        t0 = n * CK
        t1 = tl.minimum(t0 + CK, L)
        # Recompute the block forward, saving the state before each step.
        W = tl.load(W_ckpt + (bh * NC + n) * DV * DK + w_rel, mask=w_mask, other=0.0)
        y = tl.load(y_ckpt + (bh * NC + n) * DV + iv, mask=mv, other=0.0)
        for t in range(t0, t1):
            tl.store(W_scratch + (bh * CK + t - t0) * DV * DK + w_rel, W, mask=w_mask)
            tl.store(y_scratch + (bh * CK + t - t0) * DV + iv, y, mask=mv)
            W, y, _, _, _, _, _, _ = rdn_step(W, y, tl.load(keep + b * L + t), q, k, v, beta,
                                              Rq_h, Rk_h, Rv_h, rbeta_h, bh, t, L, ik, iv, mk, mv, DK, DV)
        tl.debug_barrier()  # the scratch written above is read below by other threads
        for j in range(0, t1 - t0):
            t = t1 - 1 - j
            kp = tl.load(keep + b * L + t)
            W_t, _, W_in, h, q_t, k_t, delta, beta_t = rdn_step(
                tl.load(W_scratch + (bh * CK + t - t0) * DV * DK + w_rel, mask=w_mask, other=0.0),
                tl.load(y_scratch + (bh * CK + t - t0) * DV + iv, mask=mv, other=0.0), kp,
                q, k, v, beta, Rq_h, Rk_h, Rv_h, rbeta_h, bh, t, L, ik, iv, mk, mv, DK, DV)
            # y_t = W_t q_t: y_t's gradient is the output's plus what step t+1 sent back
            dy += tl.load(d_out + (bh * L + t) * DV + iv, mask=mv, other=0.0)
            dW += dy[:, None] * q_t[None, :]
            dq_t = tl.sum(W_t * dy[:, None], 0)
            dW, dk_t, dv_t, dbeta_t = delta_step_backward(dW, W_in, k_t, delta, beta_t)
            dq_t = softmax_backward(q_t, dq_t)
            dk_t = softmax_backward(k_t, dk_t)
            dbeta_t = dbeta_t * beta_t * (1.0 - beta_t)
            tl.store(dq + (bh * L + t) * DK + ik, dq_t, mask=mk)
            tl.store(dk + (bh * L + t) * DK + ik, dk_t, mask=mk)
            tl.store(dv + (bh * L + t) * DV + iv, dv_t, mask=mv)
            tl.store(dbeta + bh * L + t, dbeta_t)
            # Eqs. 15-18 all read h = tanh(y_{t−1})
            dh = (tl.sum(Rq_h * dq_t[:, None], 0) + tl.sum(Rk_h * dk_t[:, None], 0)
                  + tl.sum(Rv_h * dv_t[:, None], 0) + rbeta_h * dbeta_t)
            dy = keep_or_zero(dh * (1.0 - h * h), kp)
            dW = keep_or_zero(dW, kp)
        tl.debug_barrier()  # the next block overwrites the scratch read above
    tl.store(dW0 + bh * DV * DK + w_rel, dW, mask=w_mask)
    tl.store(dy0 + bh * DV + iv, dy, mask=mv)
