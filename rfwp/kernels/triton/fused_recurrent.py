"""Fused recurrent kernels of the sum rule (Linear Transformer, RFWP Eqs. 6-7) and the delta rule
(Delta Net, RFWP Eqs. 8-10).

One program per (batch·head, block of BV value rows) walks through time with its rows of the fast
weight W (float32) in registers. Under both rules each row of W evolves on its own, so the value
dimension is split across programs; the key-side gradients (q, k, β) are written per block and
summed by the caller.

The backward stores no per-step fast weights. A reverse sweep carries G = ∂loss/∂W_t back through
time and gives the gradients of v, β, of the initial state and the part of k's gradient that does not
need W; a forward sweep then rebuilds W_t from the initial state and adds the parts that do
(dq_t = W_tᵀ dy_t and, for the delta rule, −W̃_tᵀ dv_t with W̃_t the state before step t's update).
Resets are exact in both sweeps.
"""
import triton
import triton.language as tl

from .fast_weight_step import delta_step, keep_or_zero


@triton.jit
def fused_recurrent_fwd(q, k, v, beta, keep, W0, out, W_out, delta_out, L, H,
                        DK: tl.constexpr, DV: tl.constexpr, BK: tl.constexpr, BV: tl.constexpr,
                        DELTA: tl.constexpr):
    bh = tl.program_id(0).to(tl.int64)
    b = bh // H
    ik = tl.arange(0, BK)
    iv = tl.program_id(1) * BV + tl.arange(0, BV)
    mk = ik < DK
    mv = iv < DV
    w_offs = bh * DV * DK + iv[:, None] * DK + ik[None, :]
    w_mask = mv[:, None] & mk[None, :]
    W = tl.load(W0 + w_offs, mask=w_mask, other=0.0)
    for t in range(0, L):
        W = keep_or_zero(W, tl.load(keep + b * L + t))  # reset: the state is zeroed before step t
        k_t = tl.load(k + (bh * L + t) * DK + ik, mask=mk, other=0.0).to(tl.float32)
        q_t = tl.load(q + (bh * L + t) * DK + ik, mask=mk, other=0.0).to(tl.float32)
        v_t = tl.load(v + (bh * L + t) * DV + iv, mask=mv, other=0.0).to(tl.float32)
        if DELTA:
            W, delta = delta_step(W, k_t, v_t, tl.load(beta + bh * L + t).to(tl.float32))
            tl.store(delta_out + (bh * L + t) * DV + iv, delta, mask=mv)
        else:
            W = W + v_t[:, None] * k_t[None, :]  # Eq. 6
        tl.store(out + (bh * L + t) * DV + iv, tl.sum(W * q_t[None, :], 1), mask=mv)  # Eq. 7
    tl.store(W_out + w_offs, W, mask=w_mask)


@triton.jit
def fused_recurrent_bwd(q, k, v, beta, keep, W0, delta, d_out, dW_out,
                        dq, dk, dv, dbeta, dW0, L, H,
                        DK: tl.constexpr, DV: tl.constexpr, BK: tl.constexpr, BV: tl.constexpr,
                        DELTA: tl.constexpr):
    bh = tl.program_id(0).to(tl.int64)
    b = bh // H
    blk = tl.program_id(1)
    part = blk * tl.num_programs(0) + bh  # this value block's slice of the per-block gradients
    ik = tl.arange(0, BK)
    iv = blk * BV + tl.arange(0, BV)
    mk = ik < DK
    mv = iv < DV
    w_offs = bh * DV * DK + iv[:, None] * DK + ik[None, :]
    w_mask = mv[:, None] & mk[None, :]

    # Reverse sweep: G_t = ∂loss/∂W_t after step t's update, including its read-out y_t = W_t q_t.
    G = tl.load(dW_out + w_offs, mask=w_mask, other=0.0)
    for i in range(0, L):
        t = L - 1 - i
        k_t = tl.load(k + (bh * L + t) * DK + ik, mask=mk, other=0.0).to(tl.float32)
        q_t = tl.load(q + (bh * L + t) * DK + ik, mask=mk, other=0.0).to(tl.float32)
        dy_t = tl.load(d_out + (bh * L + t) * DV + iv, mask=mv, other=0.0)
        G = G + dy_t[:, None] * q_t[None, :]
        du = tl.sum(G * k_t[None, :], 1)  # gradient of the value written at step t
        if DELTA:
            beta_t = tl.load(beta + bh * L + t).to(tl.float32)
            delta_t = tl.load(delta + (bh * L + t) * DV + iv, mask=mv, other=0.0)
            dv_t = beta_t * du
            tl.store(dbeta + part * L + t, tl.sum(du * delta_t, 0))
            tl.store(dk + (part * L + t) * DK + ik, tl.sum(G * (beta_t * delta_t)[:, None], 0), mask=mk)
            G = G - dv_t[:, None] * k_t[None, :]  # W_t = W̃ + β (v − W̃ k) ⊗ k
        else:
            v_t = tl.load(v + (bh * L + t) * DV + iv, mask=mv, other=0.0).to(tl.float32)
            dv_t = du
            tl.store(dk + (part * L + t) * DK + ik, tl.sum(G * v_t[:, None], 0), mask=mk)
        tl.store(dv + (bh * L + t) * DV + iv, dv_t, mask=mv)
        G = keep_or_zero(G, tl.load(keep + b * L + t))
    tl.store(dW0 + w_offs, G, mask=w_mask)

    # The forward sweep reads back what the reverse sweep wrote; a barrier orders the two.
    tl.debug_barrier()
    W = tl.load(W0 + w_offs, mask=w_mask, other=0.0)
    for t in range(0, L):
        W = keep_or_zero(W, tl.load(keep + b * L + t))
        k_t = tl.load(k + (bh * L + t) * DK + ik, mask=mk, other=0.0).to(tl.float32)
        if DELTA:
            beta_t = tl.load(beta + bh * L + t).to(tl.float32)
            delta_t = tl.load(delta + (bh * L + t) * DV + iv, mask=mv, other=0.0)
            dv_t = tl.load(dv + (bh * L + t) * DV + iv, mask=mv, other=0.0)
            dk_offs = dk + (part * L + t) * DK + ik
            # δ = v − W̃ k: k's gradient through the read of the old value is −W̃ᵀ dv
            tl.store(dk_offs, tl.load(dk_offs, mask=mk, other=0.0) - tl.sum(W * dv_t[:, None], 0), mask=mk)
            W = W + (beta_t * delta_t)[:, None] * k_t[None, :]
        else:
            v_t = tl.load(v + (bh * L + t) * DV + iv, mask=mv, other=0.0).to(tl.float32)
            W = W + v_t[:, None] * k_t[None, :]
        dy_t = tl.load(d_out + (bh * L + t) * DV + iv, mask=mv, other=0.0)
        tl.store(dq + (part * L + t) * DK + ik, tl.sum(W * dy_t[:, None], 0), mask=mk)
