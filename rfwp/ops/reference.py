"""Step-by-step references of every fast weight update: the ground truth.

Each function is a plain loop over time that reads like the paper's equations; autograd
differentiates it, so gradients reach every input and the initial state. Every fast path
(chunked, compiled C++, Triton) is tested equal to the function of the same name here.

Conventions shared by all ops (see ``rfwp.ops`` for the public, dispatching entry points):
  * q, k, v: (batch, heads, length, dim); beta: (batch, heads, length), the rate β in (0, 1) (after σ);
    where an op takes β before σ it says so by its name (``beta_logit``).
  * a fast weight W has shape (batch, heads, d_value, d_key), the paper's W (v ⊗ k is v kᵀ).
  * ``state`` is the carried state at the start of the sequence (zeros when None) and the
    returned state is the one after the last step, so a sequence split in two pieces, the
    second started from the first's state, gives the same outputs as the whole.
  * ``reset``: optional bool (batch, length); where True the whole state is overwritten with
    zeros before that step, so several episodes or documents can share one row without padding.
  * feature maps (ELU+1, DPFP, ...) and sum normalisation are applied by the caller
    (``rfwp.feature_maps``), except inside recurrences where they depend on the previous
    output (Recurrent Delta Net), where the op applies them and names them as an argument.
"""
from __future__ import annotations

from typing import NamedTuple

import torch
from torch import Tensor

from ..feature_maps import build_key_map, check_choice


class DeltaRNNState(NamedTuple):
    W: Tensor  # (B, H, d_value, d_key) feedforward fast weight, Eq. 12
    R: Tensor  # (B, H, d_value, d_value) recurrent fast weight, Eq. 12
    y: Tensor  # (B, H, d_value) previous output y^(i-1)

    @classmethod
    def zeros(cls, k: Tensor, v: Tensor) -> DeltaRNNState:
        B, H, _, dk = k.shape
        dv = v.shape[-1]
        return cls(k.new_zeros(B, H, dv, dk), k.new_zeros(B, H, dv, dv), k.new_zeros(B, H, dv))


class DeltaLSTMState(NamedTuple):
    W: Tensor  # (B, H, 3, d_value, d_key) fast weights W, W_f, W_o (gates u, f, o)
    R: Tensor  # (B, H, 3, d_value, d_value) recurrent fast weights R, R_f, R_o
    c: Tensor  # (B, H, d_value) cell
    y: Tensor  # (B, H, d_value) previous output

    @classmethod
    def zeros(cls, k: Tensor, v: Tensor) -> DeltaLSTMState:
        B, H, _, _, dk = k.shape
        dv = v.shape[-1]
        return cls(k.new_zeros(B, H, 3, dv, dk), k.new_zeros(B, H, 3, dv, dv), k.new_zeros(B, H, dv),
                   k.new_zeros(B, H, dv))


class RDNState(NamedTuple):
    W: Tensor  # (B, H, d_value, d_key) fast weight
    y: Tensor  # (B, H, d_value) previous output y^(i-1), fed back by Eqs. 15-18

    @classmethod
    def zeros(cls, k: Tensor, v: Tensor) -> RDNState:
        B, H, _, dk = k.shape
        dv = v.shape[-1]
        return cls(k.new_zeros(B, H, dv, dk), k.new_zeros(B, H, dv))


DELTA_RNN_VERSIONS = ("A", "B")             # Eq. 19, Eq. 12
DELTA_LSTM_VERSIONS = ("A", "B", "C", "D")  # Eqs. 20-24, 25-29, 30-35, 36-40


def apply_reset(state, reset: Tensor | None, t: int):
    """``state`` (a tensor or NamedTuple) with the rows reset before step t overwritten with zeros (overwritten,
    not multiplied by 0, so that an inf or NaN state is forgotten too)."""
    if reset is None:
        return state

    def zero(s: Tensor) -> Tensor:
        return torch.where(reset[:, t].view(-1, *([1] * (s.dim() - 1))), 0.0, s)

    return zero(state) if isinstance(state, Tensor) else type(state)(*map(zero, state))


def outer(a: Tensor, b: Tensor) -> Tensor:
    """a ⊗ b = a bᵀ over the last dimension, batched."""
    return a.unsqueeze(-1) * b.unsqueeze(-2)


def matvec(W: Tensor, x: Tensor) -> Tensor:
    return (W @ x.unsqueeze(-1)).squeeze(-1)


def delta_update(W: Tensor, k: Tensor, v: Tensor, beta: Tensor) -> Tensor:
    """ICML Eqs. 20-24 / RFWP Eqs. 8-10: v̄ = W k;  W ← W + β (v − v̄) ⊗ k."""
    v_bar = matvec(W, k)
    return W + outer(beta.unsqueeze(-1) * (v - v_bar), k)


def sum_rule(q: Tensor, k: Tensor, v: Tensor, state: Tensor | None = None, reset: Tensor | None = None):
    """Linear Transformer, RFWP Eqs. 6-7: W_t = W_{t-1} + v_t ⊗ k_t;  y_t = W_t q_t."""
    B, H, L, _ = k.shape
    W = k.new_zeros(B, H, v.shape[-1], k.shape[-1]) if state is None else state
    out = []
    for t in range(L):
        W = apply_reset(W, reset, t)
        W = W + outer(v[:, :, t], k[:, :, t])
        out.append(matvec(W, q[:, :, t]))
    return torch.stack(out, dim=2), W


def delta_rule(q: Tensor, k: Tensor, v: Tensor, beta: Tensor, state: Tensor | None = None,
               reset: Tensor | None = None):
    """Delta Net, RFWP Eqs. 8-10: W_t = W_{t-1} + β_t (v_t − W_{t-1} k_t) ⊗ k_t;  y_t = W_t q_t."""
    B, H, L, _ = k.shape
    W = k.new_zeros(B, H, v.shape[-1], k.shape[-1]) if state is None else state
    out = []
    for t in range(L):
        W = apply_reset(W, reset, t)
        W = delta_update(W, k[:, :, t], v[:, :, t], beta[:, :, t])
        out.append(matvec(W, q[:, :, t]))
    return torch.stack(out, dim=2), W


def delta_rnn(q: Tensor, k: Tensor, v: Tensor, beta: Tensor, recurrent_k: Tensor, recurrent_v: Tensor,
              recurrent_beta: Tensor, state: DeltaRNNState | None = None, reset: Tensor | None = None,
              version: str = "B"):
    """Delta RNN (RFWP Sec. 3.1). W and R are both programmed by the delta rule (Eq. 8); R's key
    ``recurrent_k``, value ``recurrent_v`` and rate ``recurrent_beta`` (after σ, like ``beta``) come from the
    slow net like k, v, beta (``recurrent_k`` must already be a valid key: the authors use a softmax,
    original-code.md §3).

      version "B" (Eq. 12, Table 1):  y_t = W_t q_t + R_t softmax(y_{t-1})
      version "A" (Eq. 19, Table 4):  y_t = softmax(W_t q_t + R_t y_{t-1})
    with y_0 = 0. Shapes: recurrent_k, recurrent_v (B, H, L, d_value); recurrent_beta (B, H, L).
    """
    check_choice("Delta RNN version", version, DELTA_RNN_VERSIONS)
    L = k.shape[2]
    W, R, y = DeltaRNNState.zeros(k, v) if state is None else state
    out = []
    for t in range(L):
        W, R, y = apply_reset(DeltaRNNState(W, R, y), reset, t)
        W = delta_update(W, k[:, :, t], v[:, :, t], beta[:, :, t])
        R = delta_update(R, recurrent_k[:, :, t], recurrent_v[:, :, t], recurrent_beta[:, :, t])
        if version == "B":
            y = matvec(W, q[:, :, t]) + matvec(R, torch.softmax(y, dim=-1))
        else:
            y = torch.softmax(matvec(W, q[:, :, t]) + matvec(R, y), dim=-1)
        out.append(y)
    return torch.stack(out, dim=2), DeltaRNNState(W, R, y)


def delta_lstm(q: Tensor, k: Tensor, v: Tensor, beta: Tensor, recurrent_k: Tensor, recurrent_v: Tensor,
               recurrent_beta: Tensor, state: DeltaLSTMState | None = None, reset: Tensor | None = None,
               version: str = "D"):
    """Delta LSTM (RFWP Appendix A.2, Eqs. 20-40): six fast weights, each programmed by the delta rule.

    Axis 2 of every input indexes the gate g ∈ (u, f, o): q, k, v (B, H, 3, L, d), beta (B, H, 3, L);
    recurrent_k, recurrent_v (B, H, 3, L, d_value), recurrent_beta (B, H, 3, L). Each gate has its own
    slow-net query, as in the authors' code (three Delta Nets); the paper's equations share one q, which
    is the special case of equal queries. With z_g = W_g q_g and s = f(y_{t-1}) (f = softmax; identity in A):

      A: u = σ(z_u + R_u y),    y_t = softmax(c_t ⊙ o)                  (Eqs. 20-24)
      B: u = σ(z_u + R_u s),    y_t = c_t ⊙ o                           (Eqs. 25-29)
      C: u = σ(z_u + R_u s),    y_t = c_t ⊙ o + z_u                     (Eqs. 30-35)
      D: u = z_u + R_u s,       y_t = c_t ⊙ o                           (Eqs. 36-40, Table 1)
    and in all versions f = σ(z_f + R_f s), o = σ(z_o + R_o s), c_t = f ⊙ c_{t-1} + (1 − f) ⊙ u.
    """
    check_choice("Delta LSTM version", version, DELTA_LSTM_VERSIONS)
    L = k.shape[3]
    W, R, c, y = DeltaLSTMState.zeros(k, v) if state is None else state
    out = []
    for t in range(L):
        W, R, c, y = apply_reset(DeltaLSTMState(W, R, c, y), reset, t)
        W = delta_update(W, k[:, :, :, t], v[:, :, :, t], beta[:, :, :, t])
        R = delta_update(R, recurrent_k[:, :, :, t], recurrent_v[:, :, :, t], recurrent_beta[:, :, :, t])
        s = y if version == "A" else torch.softmax(y, dim=-1)
        z = matvec(W, q[:, :, :, t])                       # (B, H, 3, dv): z_u, z_f, z_o
        pre = z + matvec(R, s.unsqueeze(2))
        u = pre[:, :, 0] if version == "D" else torch.sigmoid(pre[:, :, 0])
        f, o = torch.sigmoid(pre[:, :, 1]), torch.sigmoid(pre[:, :, 2])
        c = f * c + (1 - f) * u
        y = c * o
        if version == "A":
            y = torch.softmax(y, dim=-1)
        elif version == "C":
            y = y + z[:, :, 0]
        out.append(y)
    return torch.stack(out, dim=2), DeltaLSTMState(W, R, c, y)


def recurrent_delta_net(q: Tensor, k: Tensor, v: Tensor, beta_logit: Tensor, R_q: Tensor, R_k: Tensor,
                        R_v: Tensor, R_beta: Tensor, state: RDNState | None = None, reset: Tensor | None = None,
                        key_map: str = "softmax"):
    """Recurrent Delta Net (RFWP Sec. 3.2, Eqs. 15-18): the slow net also reads tanh(y_{t-1}).

    q, k, v, beta_logit are the feed-forward parts W_q x, W_k x, W_v x, W_β x (before φ and σ);
    R_q, R_k (H, d_key, d_value), R_v (H, d_value, d_value) and R_beta (H, d_value) are the slow
    recurrent weights R_q, R_k, R_v, R_β. With h = tanh(y_{t-1}):
        q_t = φ(W_q x + R_q h),  k_t = φ(W_k x + R_k h),  v_t = W_v x + R_v h,
        β_t = σ(W_β x + R_β h),  W_t = W_{t-1} + β_t (v_t − W_{t-1} k_t) ⊗ k_t,  y_t = W_t q_t.
    φ is ``key_map``: "softmax" as in the authors' code, or "elu_sum" (ELU+1, sum-normalised).
    """
    feature_map = build_key_map(key_map, k.shape[-1])
    L = k.shape[2]
    W, y = RDNState.zeros(k, v) if state is None else state
    out = []
    for t in range(L):
        W, y = apply_reset(RDNState(W, y), reset, t)
        h = torch.tanh(y)
        q_t, k_t = feature_map(q[:, :, t] + matvec(R_q, h), k[:, :, t] + matvec(R_k, h))
        v_t = v[:, :, t] + matvec(R_v, h)
        beta_t = torch.sigmoid(beta_logit[:, :, t] + (R_beta * h).sum(-1))
        W = delta_update(W, k_t, v_t, beta_t)
        y = matvec(W, q_t)
        out.append(y)
    return torch.stack(out, dim=2), RDNState(W, y)
