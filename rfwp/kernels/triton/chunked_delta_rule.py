"""Chunkwise-parallel delta rule (Delta Net, RFWP Eqs. 8-10) in the WY form of Yang et al. (2024),
with resets inside a chunk.

Within a chunk of C steps with incoming state S (the paper's W, value × key), keys K, values V,
queries Q (rows = steps) and rates β, the inserted values u_t = β_t (v_t − W_{t−1} k_t) solve
    (I + A) U = diag(β) P,   A_ts = β_t k_t·k_s for s < t,   P = V − K Sᵀ,
so U = T diag(β) P with T = (I + A)⁻¹, and
    O = Q Sᵀ + (Q Kᵀ ⊙ causal) U,        S_next = S + Uᵀ K.
A reset before step t splits the chunk into segments: steps interact only within a segment, and S
reaches only the steps before the first reset (rows where ``first`` = 1) and S_next only if the chunk
has no reset. One program per (batch·head, block of BV value rows) walks through the chunks; the
forward stores S at every chunk start, and the backward walks the chunks in reverse from those.
Key-side gradients (q, k, β) are written per value block and summed by the caller.
"""
import triton
import triton.language as tl

from .fast_weight_step import weight_tile

IEEE = tl.constexpr("ieee")  # exact float32 products: TF32 would miss the reference by about 1e-3


@triton.jit
def segments(keep, C: tl.constexpr):
    """seg_t = number of resets in the chunk up to and including step t."""
    it = tl.arange(0, C)
    reset = 1.0 - keep
    return tl.sum(tl.where(it[:, None] >= it[None, :], reset[None, :], 0.0), 1)


@triton.jit
def from_state(seg, X):
    """The rows of X (one per step, a product with the carried state S) for the steps before the chunk's first
    reset, zeros after it: overwritten, so that an inf or NaN S is forgotten too."""
    return tl.where(seg[:, None] == 0, X, 0.0)


@triton.jit
def inverse_unit_lower(A, C: tl.constexpr):
    """(I + A)⁻¹ for strictly lower-triangular A, by forward substitution one row at a time."""
    it = tl.arange(0, C)
    T = tl.where(it[:, None] == it[None, :], 1.0, 0.0)
    for i in range(1, C):
        a_i = tl.sum(tl.where(it[:, None] == i, A, 0.0), 0)  # row i of A
        row = -tl.sum(a_i[:, None] * T, 0)                   # T_i = e_i − Σ_{j<i} A_ij T_j
        T = tl.where(it[:, None] == i, T + row[None, :], T)
    return T


@triton.jit
def wy(S, K, V, beta, seg, C: tl.constexpr):
    """The chunk's T, P = V − first ⊙ K Sᵀ, U = T diag(β) P, and K Kᵀ (reused by the backward)."""
    it = tl.arange(0, C)
    same = seg[:, None] == seg[None, :]
    KK = tl.dot(K, tl.trans(K), input_precision=IEEE)
    A = tl.where((it[:, None] > it[None, :]) & same, beta[:, None] * KK, 0.0)
    T = inverse_unit_lower(A, C)
    P = V - from_state(seg, tl.dot(K, tl.trans(S), input_precision=IEEE))
    U = tl.dot(T, beta[:, None] * P, input_precision=IEEE)
    return T, P, U, KK


@triton.jit
def chunked_delta_fwd(q, k, v, beta, keep, W0, out, W_out, states, L, H, NC,
                      DK: tl.constexpr, DV: tl.constexpr, BK: tl.constexpr, BV: tl.constexpr,
                      C: tl.constexpr):
    bh = tl.program_id(0).to(tl.int64)
    b = bh // H
    it = tl.arange(0, C)
    iv, ik, mv, mk, w_rel, w_mask = weight_tile(tl.program_id(1) * BV, DV, DK, BV, BK)
    S = tl.load(W0 + bh * DV * DK + w_rel, mask=w_mask, other=0.0)
    for n in range(0, NC):
        tl.store(states + (bh * NC + n) * DV * DK + w_rel, S, mask=w_mask)
        t = n * C + it
        mt = t < L
        K = tl.load(k + (bh * L + t[:, None]) * DK + ik[None, :], mask=mt[:, None] & mk[None, :],
                    other=0.0).to(tl.float32)
        Q = tl.load(q + (bh * L + t[:, None]) * DK + ik[None, :], mask=mt[:, None] & mk[None, :],
                    other=0.0).to(tl.float32)
        V = tl.load(v + (bh * L + t[:, None]) * DV + iv[None, :], mask=mt[:, None] & mv[None, :],
                    other=0.0).to(tl.float32)
        beta_c = tl.load(beta + bh * L + t, mask=mt, other=0.0).to(tl.float32)
        seg = segments(tl.load(keep + b * L + t, mask=mt, other=1.0), C)
        T, P, U, KK = wy(S, K, V, beta_c, seg, C)
        same = seg[:, None] == seg[None, :]
        QK = tl.where((it[:, None] >= it[None, :]) & same, tl.dot(Q, tl.trans(K), input_precision=IEEE), 0.0)
        O = from_state(seg, tl.dot(Q, tl.trans(S), input_precision=IEEE)) + tl.dot(QK, U, input_precision=IEEE)
        tl.store(out + (bh * L + t[:, None]) * DV + iv[None, :], O, mask=mt[:, None] & mv[None, :])
        seg_last = tl.max(seg, 0)
        last = tl.where(seg == seg_last, 1.0, 0.0)
        S = tl.where(seg_last == 0, S, 0.0) + tl.dot(tl.trans(U * last[:, None]), K, input_precision=IEEE)
    tl.store(W_out + bh * DV * DK + w_rel, S, mask=w_mask)


@triton.jit
def chunked_delta_bwd(q, k, v, beta, keep, states, d_out, dW_out, dq, dk, dv, dbeta, dW0, L, H, NC,
                      DK: tl.constexpr, DV: tl.constexpr, BK: tl.constexpr, BV: tl.constexpr,
                      C: tl.constexpr):
    bh = tl.program_id(0).to(tl.int64)
    b = bh // H
    part = tl.program_id(1) * tl.num_programs(0) + bh  # this value block's slice of dq, dk, dβ
    it = tl.arange(0, C)
    iv, ik, mv, mk, w_rel, w_mask = weight_tile(tl.program_id(1) * BV, DV, DK, BV, BK)
    causal = it[:, None] >= it[None, :]
    strict = it[:, None] > it[None, :]
    dS = tl.load(dW_out + bh * DV * DK + w_rel, mask=w_mask, other=0.0)
    for i in range(0, NC):
        n = NC - 1 - i
        S = tl.load(states + (bh * NC + n) * DV * DK + w_rel, mask=w_mask, other=0.0)
        t = n * C + it
        mt = t < L
        mtk = mt[:, None] & mk[None, :]
        mtv = mt[:, None] & mv[None, :]
        K = tl.load(k + (bh * L + t[:, None]) * DK + ik[None, :], mask=mtk, other=0.0).to(tl.float32)
        Q = tl.load(q + (bh * L + t[:, None]) * DK + ik[None, :], mask=mtk, other=0.0).to(tl.float32)
        V = tl.load(v + (bh * L + t[:, None]) * DV + iv[None, :], mask=mtv, other=0.0).to(tl.float32)
        dO = tl.load(d_out + (bh * L + t[:, None]) * DV + iv[None, :], mask=mtv, other=0.0)
        beta_c = tl.load(beta + bh * L + t, mask=mt, other=0.0).to(tl.float32)
        seg = segments(tl.load(keep + b * L + t, mask=mt, other=1.0), C)
        T, P, U, KK = wy(S, K, V, beta_c, seg, C)
        same = seg[:, None] == seg[None, :]
        first = tl.where(seg == 0, 1.0, 0.0)
        seg_last = tl.max(seg, 0)
        last = tl.where(seg == seg_last, 1.0, 0.0)
        QK = tl.where(causal & same, tl.dot(Q, tl.trans(K), input_precision=IEEE), 0.0)

        # S_next = [no reset] S + (last ⊙ U)ᵀ K
        dU = last[:, None] * tl.dot(K, tl.trans(dS), input_precision=IEEE)
        dK = last[:, None] * tl.dot(U, dS, input_precision=IEEE)
        dS_in = tl.where(seg_last == 0, dS, 0.0)
        # O = first ⊙ Q Sᵀ + QK U
        dQ = from_state(seg, tl.dot(dO, S, input_precision=IEEE))
        dS_in += tl.dot(tl.trans(first[:, None] * dO), Q, input_precision=IEEE)
        dQK = tl.where(causal & same, tl.dot(dO, tl.trans(U), input_precision=IEEE), 0.0)
        dU += tl.dot(tl.trans(QK), dO, input_precision=IEEE)
        dQ += tl.dot(dQK, K, input_precision=IEEE)
        dK += tl.dot(tl.trans(dQK), Q, input_precision=IEEE)
        # U = (I + A)⁻¹ diag(β) P:  d(diag(β) P) = Tᵀ dU,  dA = −Tᵀ dU Uᵀ on A's support
        dX = tl.dot(tl.trans(T), dU, input_precision=IEEE)
        dA = tl.where(strict & same, -tl.dot(dX, tl.trans(U), input_precision=IEEE), 0.0)
        dbeta_c = tl.sum(dX * P, 1) + tl.sum(dA * KK, 1)
        dP = beta_c[:, None] * dX
        # P = V − first ⊙ K Sᵀ
        dK -= from_state(seg, tl.dot(dP, S, input_precision=IEEE))
        dS_in -= tl.dot(tl.trans(first[:, None] * dP), K, input_precision=IEEE)
        # A = β ⊙ K Kᵀ on its support
        dKK = beta_c[:, None] * dA
        dK += tl.dot(dKK, K, input_precision=IEEE) + tl.dot(tl.trans(dKK), K, input_precision=IEEE)

        tl.store(dq + (part * L + t[:, None]) * DK + ik[None, :], dQ, mask=mtk)
        tl.store(dk + (part * L + t[:, None]) * DK + ik[None, :], dK, mask=mtk)
        tl.store(dbeta + part * L + t, dbeta_c, mask=mt)
        tl.store(dv + (bh * L + t[:, None]) * DV + iv[None, :], dP, mask=mtv)
        dS = dS_in
    tl.store(dW0 + bh * DV * DK + w_rel, dS, mask=w_mask)
