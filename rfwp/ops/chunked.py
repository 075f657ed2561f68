"""Chunkwise-parallel sum and delta rules: the contract of ``rfwp.ops.reference``, in C×C matrix products.

The sequence is cut into chunks of C steps. Starting a chunk from the carried fast weight S, both rules
have the form
    W_t = S + Σ_{i≤t} u_i ⊗ k_i,      y_t = W_t q_t = S q_t + Σ_{i≤t} (k_i·q_t) u_i,
with u_i = v_i for the sum rule (RFWP Eq. 6) and, for the delta rule (Eqs. 8-9),
    u_i = β_i (v_i − W_{i−1} k_i) = β_i (v_i − S k_i − Σ_{j<i} (k_j·k_i) u_j),
i.e. A U = diag(β) (V − K Sᵀ) with A = I + tril(diag(β) K Kᵀ, −1): the product of the C factors
(I − β k kᵀ) in WY / UT form is one unit-lower-triangular C×C solve. The system is linear in S, so
U = U_v − W_k Sᵀ with U_v = A⁻¹ diag(β) V and W_k = A⁻¹ diag(β) K independent of S: the chunks are
solved all at once and only the chunk-to-chunk pass is sequential,
    S_{n+1} = S_n G_n + D_n,   G_n = I − W_kᵀ K,   D_n = U_vᵀ K     (sum rule: W_k = 0).

Resets split a chunk into episodes. A reset before step r zeroes W, so pairs (i, j) from different
episodes of a chunk are masked out of every C×C matrix, only steps before the chunk's first reset see
S, and only the chunk's last episode builds S_{n+1} (S_{n+1} = D_n when the chunk holds a reset: S is
dropped by torch.where, not multiplied by 0, so that an inf or NaN state is forgotten too).

Memory: the C×C matrices take O(L·C) and the carried states O(L/C · d_value · d_key), so training
memory grows as O(L·d) when C ≥ d.
"""
from __future__ import annotations

from typing import NamedTuple

import torch
import torch.nn.functional as F
from torch import Tensor

# Faster than 64 for fp32 forward+backward at B=8, H=8, d=32, L=256 and 1024 (CPU, 1 and 2 threads), and
# C ≥ d keeps the carried states O(L·d) for the usual head sizes d ≤ 32.
DEFAULT_CHUNK_SIZE = 32


class Episodes(NamedTuple):
    """Where each step of each chunk stands relative to the resets, as bool masks."""
    same: Tensor   # (B, 1, N, C, C) steps i and j lie in the same episode
    first: Tensor  # (B, 1, N, C, 1) step is before the chunk's first reset: it sees the carried state
    last: Tensor   # (B, 1, N, C, 1) step is in the chunk's last episode: it builds the next carried state
    carry: Tensor  # (B, 1, N, 1, 1) no reset in the chunk: the carried state survives it


def episodes(reset: Tensor, chunk_size: int) -> Episodes:
    """Episode masks from ``reset`` (B, L), which zeroes the state before the steps where it is True."""
    B, L = reset.shape
    pad = -L % chunk_size
    index = F.pad(reset, (0, pad)).view(B, 1, -1, chunk_size).cumsum(-1)  # episode number within the chunk
    first = index == 0
    return Episodes(same=index.unsqueeze(-1) == index.unsqueeze(-2), first=first.unsqueeze(-1),
                    last=(index == index[..., -1:]).unsqueeze(-1), carry=first[..., -1:].unsqueeze(-1))


def to_chunks(x: Tensor, chunk_size: int) -> Tensor:
    """(B, H, L, d) -> (B, H, N, C, d), zero-padded at the end: a zero key and value leave W unchanged."""
    B, H, L, d = x.shape
    pad = -L % chunk_size
    return (F.pad(x, (0, 0, 0, pad)) if pad else x).reshape(B, H, -1, chunk_size, d)


def sum_rule(q: Tensor, k: Tensor, v: Tensor, state: Tensor | None = None, reset: Tensor | None = None,
             *, chunk_size: int = DEFAULT_CHUNK_SIZE):
    """Linear Transformer, RFWP Eqs. 6-7, chunkwise. Returns (out, W) like ``reference.sum_rule``."""
    return chunkwise(q, k, v, None, state, reset, chunk_size)


def delta_rule(q: Tensor, k: Tensor, v: Tensor, beta: Tensor, state: Tensor | None = None,
               reset: Tensor | None = None, *, chunk_size: int = DEFAULT_CHUNK_SIZE):
    """Delta Net, RFWP Eqs. 8-10, chunkwise in WY form. Returns (out, W) like ``reference.delta_rule``."""
    return chunkwise(q, k, v, beta, state, reset, chunk_size)


def chunkwise(q: Tensor, k: Tensor, v: Tensor, beta: Tensor | None, state: Tensor | None,
              reset: Tensor | None, chunk_size: int):
    """The delta rule, or the sum rule when ``beta`` is None (see the module docstring for the algebra)."""
    if isinstance(chunk_size, bool) or not isinstance(chunk_size, int) or chunk_size < 1:
        raise ValueError(f"chunk_size must be a positive int, got {chunk_size!r}")
    B, H, L, dk = k.shape
    dv = v.shape[-1]
    C = min(chunk_size, L)   # a sequence shorter than a chunk (one decoding step) is one chunk, without padding
    q, k, v = (to_chunks(x, C) for x in (q, k, v))
    ep = None if reset is None else episodes(reset, C)
    kt = k.transpose(-1, -2)
    if beta is None:
        X = v                                               # sum rule: u_i = v_i
    else:
        beta = to_chunks(beta.unsqueeze(-1), C)
        # A = I + tril(diag(β) K Kᵀ, −1): a unit-triangular solve reads only the strict lower part.
        A = (beta * k) @ kt
        if ep is not None:
            A = A * ep.same
        # X = [U_v | W_k] = A⁻¹ diag(β) [V | K], W_k only for the steps that see S. Solved from the
        # right on the transposes, which are already in the column-major layout LAPACK wants.
        rhs = beta * torch.cat([v, k if ep is None else k * ep.first], dim=-1)
        X = torch.linalg.solve_triangular(A.mT, rhs.mT, upper=True, left=False, unitriangular=True).mT
    causal = torch.ones(C, C, dtype=k.dtype, device=k.device).tril()   # y_t reads W_t: the pairs i ≤ t
    scores = (q @ kt) * (causal if ep is None else causal * ep.same)
    Y = scores @ X                                          # Σ_{i≤t} (k_i·q_t) [U_v | W_k]_i
    Z = X.mT @ (k if ep is None else k * ep.last)           # [U_vᵀ K; W_kᵀ K] over the chunk's last episode
    q_state = q                                             # S q_t for the steps that see S (masked below)
    if beta is None:
        out, D, G = Y, Z, None                              # G_n = I: S_{n+1} = S_n + D_n, no d_key × d_key product
    else:
        out, Y_w = Y.split([dv, dk], dim=-1)
        D, Z_w = Z.split([dv, dk], dim=-2)
        q_state = q_state - Y_w                             # − Σ_{i≤t} (k_i·q_t) W_k,i Sᵀ
        G = torch.eye(dk, dtype=k.dtype, device=k.device) - Z_w

    # Resets: S reaches the steps before the chunk's first reset, and the next chunk if it holds none. Each
    # product with S is masked on both sides by torch.where, so that no 0 · inf reaches the outputs or gradients.
    S = k.new_zeros(B, H, dv, dk) if state is None else state
    carried = []
    for n, D_n in enumerate(D.unbind(2)):
        carried.append(S)
        kept = S if ep is None else torch.where(ep.carry[:, :, n], S, 0.0)
        S = (kept if G is None else kept @ G[:, :, n]) + D_n
    if ep is not None:
        q_state = torch.where(ep.first, q_state, 0.0)
    from_state = q_state @ torch.stack(carried, dim=2).mT
    out = out + (from_state if ep is None else torch.where(ep.first, from_state, 0.0))
    return out.flatten(2, 3)[:, :, :L], S
