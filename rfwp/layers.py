"""Multi-head Fast Weight Programmer layers (RFWP Secs. 2-3), softmax attention, and the pre-LN block.

Every layer maps x (batch, length, d_model) to y of the same shape and carries its state like nn.LSTM:

    y, state = layer(x, state=None, reset=None)

``state`` (a tensor or NamedTuple; None means zeros) is the state after the last step, so a sequence
cut in two pieces, the second started from the first's state, gives the outputs of the whole.
``reset`` is an optional bool (batch, length): where True the state is zeroed before that step.

A fast weight layer is a slow net (one bias-free Linear giving each head's q, k, v, β, ...), a feature
map φ on queries and keys, an update rule from ``rfwp.ops`` programming the fast net, an output
projection and dropout. Where the paper and the authors' code differ, the argument that chooses
between them defaults to the authors' choice (original-code.md §3).
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from typing import NamedTuple

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from . import ops
from .feature_maps import KEY_MAPS, FeatureMap, build_key_map, check_choice
from .ops import check_reset
from .ops.reference import DELTA_LSTM_VERSIONS, DELTA_RNN_VERSIONS


@dataclass(frozen=True)
class FeatureMapConfig:
    """φ for a layer's queries and keys (``rfwp.feature_maps``): its name, DPFP's ν, FAVOR+'s m and the
    normalisation: "sum" (ICML Eq. 29), "attention" (ICML Eqs. 26-28) or "none"."""
    name: str = "elu"
    nu: int = 1
    m: int = 64
    normalisation: str = "sum"

    def build(self, d_key: int, eps: float = 0.0) -> FeatureMap:
        return FeatureMap(self.name, d_key=d_key, nu=self.nu, m=self.m, normalisation=self.normalisation, eps=eps)


# ε in the sum normalisation of the Delta MLP and Delta Delta Net, as in the authors' code
# (original-code.md §3): their fast queries are outputs of other fast weights and can be exactly
# zero (a DPFP key orthogonal to the query), where φ(x)/Σφ(x) would be 0/0.
FAST_QUERY_EPS = 1e-5


def rate(beta_logit: Tensor) -> Tensor:
    """β = σ(W_β x) (RFWP Eq. 9) from the slow net's W_β x (..., 1): one learning rate per head and step."""
    return torch.sigmoid(beta_logit.squeeze(-1))


class MultiHeadLayer(nn.Module):
    """The parts every layer shares: one bias-free Linear producing all per-head slow-net outputs
    (split into ``sizes``), and the output projection of the concatenated heads, with dropout."""

    def __init__(self, d_model: int, n_heads: int, d_head: int, sizes: tuple[int, ...], dropout: float = 0.0,
                 output_scale: float = 1.0):
        super().__init__()
        self.d_model, self.n_heads, self.d_head, self.sizes = d_model, n_heads, d_head, sizes
        self.output_scale = output_scale
        self.slow = nn.Linear(d_model, n_heads * sum(sizes), bias=False)
        self.out = nn.Linear(n_heads * d_head, d_model, bias=False)
        self.drop = nn.Dropout(dropout)

    def slow_net(self, x: Tensor, reset: Tensor | None) -> tuple[Tensor, ...]:
        """x (B, L, d_model) → the slow net's outputs, each (B, H, L, size)."""
        if x.dim() != 3 or x.shape[-1] != self.d_model:
            raise ValueError(f"{type(self).__name__} takes x of shape (batch, length, d_model={self.d_model}), "
                             f"got {tuple(x.shape)}")
        B, L, _ = x.shape
        check_reset(reset, B, L)
        return self.slow(x).view(B, L, self.n_heads, -1).transpose(1, 2).split(self.sizes, dim=-1)

    def project_out(self, y: Tensor) -> Tensor:
        """(B, H, L, d_head) → (B, L, d_model); output_scale is 1/√d_head in the authors' LM code."""
        B, H, L, d = y.shape
        return self.drop(self.out(self.output_scale * y.transpose(1, 2).reshape(B, L, H * d)))


# ----------------------------------------------------------------------------------------------
# Attention normalisation (ICML Eqs. 17-19 and 26-28): the running key sum z is part of the state.

class FastWeightState(NamedTuple):
    W: Tensor  # (B, H, d_value, d_dot) fast weight
    z: Tensor  # (B, H, d_dot) running sum of the keys since the last reset, ICML Eq. 26


def running_key_sums(k: Tensor, z0: Tensor, reset: Tensor | None) -> tuple[Tensor, Tensor]:
    """z_{t−1} and z_t (ICML Eq. 26: z_t = z_{t−1} + k_t) for every step, each (B, H, L, d), from z0
    at the start; a reset before step t restarts the sum from 0 (a segment-aware cumulative sum)."""
    B, H, L, d = k.shape
    if reset is None:
        reset = torch.zeros(B, L, dtype=torch.bool, device=k.device)
    sums = torch.cat([k.new_zeros(B, H, 1, d), k.cumsum(2)], dim=2)        # sums[j] = Σ_{s<j} k_s
    t = torch.arange(L, device=k.device)
    start = torch.where(reset, t, 0).cummax(dim=1).values                   # first step of t's segment
    before = sums.gather(2, start[:, None, :, None].expand(B, H, L, d))
    # z0 until the first reset, then 0: overwritten, so that an inf or NaN z0 is forgotten too
    carried = torch.where((reset.cumsum(1) == 0)[:, None, :, None], z0.unsqueeze(2), 0.0)
    return sums[:, :, :-1] - before + carried, sums[:, :, 1:] - before + carried


def _initial(state: FastWeightState | None, k: Tensor) -> tuple[Tensor | None, Tensor]:
    if state is None:
        return None, k.new_zeros(k.shape[0], k.shape[1], k.shape[-1])
    return state


def normalised_sum_rule(q: Tensor, k: Tensor, v: Tensor, state: FastWeightState | None = None,
                        reset: Tensor | None = None, eps: float = 1e-6, implementation: str | None = None):
    """Linear Transformer with its attention normalisation, ICML Eqs. 17-19:
    W_t = W_{t−1} + v_t ⊗ k_t,  z_t = z_{t−1} + k_t,  y_t = W_t q_t / (z_t·q_t + ε)."""
    W, z0 = _initial(state, k)
    _, z = running_key_sums(k, z0, reset)
    out, W = ops.sum_rule(q, k, v, W, reset, implementation=implementation)
    y = out / ((z * q).sum(-1, keepdim=True) + eps)
    return y, FastWeightState(W, z[:, :, -1])


def normalised_delta_rule(q: Tensor, k: Tensor, v: Tensor, beta: Tensor, state: FastWeightState | None = None,
                          reset: Tensor | None = None, eps: float = 1e-6, implementation: str | None = None):
    """Delta rule with attention normalisation, ICML Eqs. 26-28:
        v̄_t = W_{t−1} k_t / (z_{t−1}·k_t),  W_t = W_{t−1} + β_t (v_t − v̄_t) ⊗ k_t,  y_t = W_t q_t / (z_t·q_t).
    With s = z_{t−1}·k_t + ε this is the plain delta rule on k/√s and v·√s with the same β, since
    β(v√s − W k/√s) ⊗ k/√s = β v ⊗ k − β (W k / s) ⊗ k; so the op is reused unchanged."""
    W, z0 = _initial(state, k)
    z_prev, z = running_key_sums(k, z0, reset)
    s = ((z_prev * k).sum(-1, keepdim=True) + eps).sqrt()
    out, W = ops.delta_rule(q, k / s, v * s, beta, W, reset, implementation=implementation)
    y = out / ((z * q).sum(-1, keepdim=True) + eps)
    return y, FastWeightState(W, z[:, :, -1])


def _no_attention_normalisation(feature_map_config: FeatureMapConfig, layer: str) -> None:
    if feature_map_config.normalisation == "attention":
        raise ValueError(f"{layer} does not support normalisation='attention' (ICML Eqs. 26-28 are implemented "
                         f"for LinearTransformerLayer and DeltaNetLayer); use 'sum' or 'none'")


# ----------------------------------------------------------------------------------------------
# Feedforward slow net, linear fast net (RFWP Sec. 2.2)

class LinearTransformerLayer(MultiHeadLayer):
    """Linear Transformer (RFWP Eqs. 5-7): W_t = W_{t−1} + v_t ⊗ φ(k_t),  y_t = W_t φ(q_t).
    State: W (B, H, d_head, d_dot), or FastWeightState(W, z) with attention normalisation."""

    def __init__(self, d_model: int, n_heads: int, d_head: int,
                 feature_map_config: FeatureMapConfig = FeatureMapConfig(), dropout: float = 0.0,
                 output_scale: float = 1.0, implementation: str | None = None):
        super().__init__(d_model, n_heads, d_head, (d_head, d_head, d_head), dropout, output_scale)
        self.feature_map = feature_map_config.build(d_head)
        self.implementation = implementation

    def forward(self, x: Tensor, state=None, reset: Tensor | None = None):
        q, k, v = self.slow_net(x, reset)
        q, k = self.feature_map(q, k)
        if self.feature_map.normalisation == "attention":
            y, state = normalised_sum_rule(q, k, v, state, reset, implementation=self.implementation)
        else:
            y, state = ops.sum_rule(q, k, v, state, reset, implementation=self.implementation)
        return self.project_out(y), state


class DeltaNetLayer(MultiHeadLayer):
    """Delta Net (RFWP Eqs. 8-10): W_t = W_{t−1} + β_t (v_t − W_{t−1} φ(k_t)) ⊗ φ(k_t),  y_t = W_t φ(q_t).
    State: W (B, H, d_head, d_dot), or FastWeightState(W, z) with attention normalisation."""

    def __init__(self, d_model: int, n_heads: int, d_head: int,
                 feature_map_config: FeatureMapConfig = FeatureMapConfig(), dropout: float = 0.0,
                 output_scale: float = 1.0, implementation: str | None = None):
        super().__init__(d_model, n_heads, d_head, (d_head, d_head, d_head, 1), dropout, output_scale)
        self.feature_map = feature_map_config.build(d_head)
        self.implementation = implementation

    def forward(self, x: Tensor, state=None, reset: Tensor | None = None):
        q, k, v, b = self.slow_net(x, reset)
        q, k = self.feature_map(q, k)
        if self.feature_map.normalisation == "attention":
            y, state = normalised_delta_rule(q, k, v, rate(b), state, reset, implementation=self.implementation)
        else:
            y, state = ops.delta_rule(q, k, v, rate(b), state, reset, implementation=self.implementation)
        return self.project_out(y), state


# ----------------------------------------------------------------------------------------------
# Feedforward slow net, recurrent or deep fast nets (RFWP Sec. 3.1)

class DeltaRNNLayer(MultiHeadLayer):
    """Delta RNN (RFWP Eq. 12, version B; Eq. 19, version A): W and the recurrent fast weight R are both
    programmed by the delta rule; R's keys, values and rates come from the slow net, which gives
    H·(5·d_head + 2) outputs per step. State: DeltaRNNState(W, R, y)."""

    def __init__(self, d_model: int, n_heads: int, d_head: int,
                 feature_map_config: FeatureMapConfig = FeatureMapConfig(), version: str = "B",
                 recurrent_key_map: str = "softmax", dropout: float = 0.0, output_scale: float = 1.0,
                 implementation: str | None = None):
        d = d_head
        super().__init__(d_model, n_heads, d_head, (d, d, d, 1, d, d, 1), dropout, output_scale)
        _no_attention_normalisation(feature_map_config, "DeltaRNNLayer")
        check_choice("Delta RNN version", version, DELTA_RNN_VERSIONS)
        self.version, self.implementation = version, implementation
        self.feature_map = feature_map_config.build(d)
        # R's keys must be positive and sum to one for a stable delta rule (RFWP Sec. 3.1); the
        # paper leaves their map open, the authors use a softmax (original-code.md §3).
        self.recurrent_feature_map = build_key_map(recurrent_key_map, d)

    def forward(self, x: Tensor, state=None, reset: Tensor | None = None):
        q, k, v, beta_logit, recurrent_k, recurrent_v, recurrent_beta_logit = self.slow_net(x, reset)
        q, k = self.feature_map(q, k)
        y, state = ops.delta_rnn(q, k, v, rate(beta_logit), self.recurrent_feature_map(recurrent_k), recurrent_v,
                                 rate(recurrent_beta_logit), state, reset,
                                 self.version, implementation=self.implementation)
        return self.project_out(y), state


class DeltaLSTMLayer(MultiHeadLayer):
    """Delta LSTM (RFWP Appendix A, Eqs. 20-40, versions A-D; D in Table 1): six fast weights, W_g and R_g
    for the gates g ∈ (u, f, o), each programmed by the delta rule with its own query, key, value and
    rate, as three Delta Nets in the authors' code: H·(15·d_head + 6) slow outputs per step.
    State: DeltaLSTMState(W, R, c, y)."""

    def __init__(self, d_model: int, n_heads: int, d_head: int,
                 feature_map_config: FeatureMapConfig = FeatureMapConfig(), version: str = "D",
                 recurrent_key_map: str = "softmax", dropout: float = 0.0, output_scale: float = 1.0,
                 implementation: str | None = None):
        d = 3 * d_head
        super().__init__(d_model, n_heads, d_head, (d, d, d, 3, d, d, 3), dropout, output_scale)
        _no_attention_normalisation(feature_map_config, "DeltaLSTMLayer")
        check_choice("Delta LSTM version", version, DELTA_LSTM_VERSIONS)
        self.version, self.implementation = version, implementation
        self.feature_map = feature_map_config.build(d_head)
        self.recurrent_feature_map = build_key_map(recurrent_key_map, d_head)

    def forward(self, x: Tensor, state=None, reset: Tensor | None = None):
        q, k, v, beta_logit, recurrent_k, recurrent_v, recurrent_beta_logit = self.slow_net(x, reset)
        # gate axis at 2: vectors (B, H, L, 3·n) → (B, H, 3, L, n), rates (B, H, L, 3) → (B, H, 3, L)
        q, k, v, recurrent_k, recurrent_v = (t.unflatten(-1, (3, -1)).movedim(3, 2)
                                             for t in (q, k, v, recurrent_k, recurrent_v))
        beta_logit, recurrent_beta_logit = beta_logit.movedim(-1, 2), recurrent_beta_logit.movedim(-1, 2)
        q, k = self.feature_map(q, k)
        y, state = ops.delta_lstm(q, k, v, torch.sigmoid(beta_logit), self.recurrent_feature_map(recurrent_k),
                                  recurrent_v, torch.sigmoid(recurrent_beta_logit),
                                  state, reset, self.version, implementation=self.implementation)
        return self.project_out(y), state


class DeltaMLPLayer(MultiHeadLayer):
    """Delta MLP (RFWP Eqs. 13-14): a fast MLP of ``fast_layers`` layers per head, every fast weight
    programmed by the delta rule from the same input x (Table 4: version A has 4, version B 2).

    As in the authors' code (original-code.md §3) the fast layers come in pairs shaped like a
    Transformer feed-forward block, d_head → d_hidden → d_head, with layer norm and a residual:
        h ← h + W_{2l} φ(W_{2l−1} φ(LN_l(h))),  h_0 = q,  y = h after the last pair.
    ``residual=False`` gives Eq. 13 as written: h_k = W_k φ(h_{k−1}). The slow net gives q and, for
    each fast layer, its key (input size), value (output size) and rate. State: tuple of the fast weights.
    """

    def __init__(self, d_model: int, n_heads: int, d_head: int,
                 feature_map_config: FeatureMapConfig = FeatureMapConfig(), fast_layers: int = 2,
                 d_hidden: int | None = None, residual: bool = True, dropout: float = 0.0, output_scale: float = 1.0,
                 implementation: str | None = None):
        if fast_layers < 2 or fast_layers % 2:
            raise ValueError(f"fast_layers must be a positive even number (pairs d_head → d_hidden → d_head), "
                             f"got {fast_layers}")
        d_hidden = d_hidden or 4 * d_model // n_heads  # the authors' size: 4·d_model split over the heads
        widths = (d_head, d_hidden) * (fast_layers // 2)   # input size of each fast layer
        outputs = (d_hidden, d_head) * (fast_layers // 2)
        sizes = (d_head,) + sum(((i, o, 1) for i, o in zip(widths, outputs)), ())
        super().__init__(d_model, n_heads, d_head, sizes, dropout, output_scale)
        _no_attention_normalisation(feature_map_config, "DeltaMLPLayer")
        self.fast_layers, self.residual, self.implementation = fast_layers, residual, implementation
        self.feature_maps = nn.ModuleList(feature_map_config.build(i, FAST_QUERY_EPS) for i in widths)
        self.norms = nn.ModuleList(nn.LayerNorm(d_head) for _ in range(fast_layers // 2) if residual)

    def forward(self, x: Tensor, state=None, reset: Tensor | None = None):
        h, *parts = self.slow_net(x, reset)
        state = (None,) * self.fast_layers if state is None else state
        weights = []
        for j in range(0, self.fast_layers, 2):
            k1, v1, b1, k2, v2, b2 = parts[3 * j:3 * j + 6]
            a, k1 = self.feature_maps[j](self.norms[j // 2](h) if self.residual else h, k1)
            hidden, W1 = ops.delta_rule(a, k1, v1, rate(b1), state[j], reset, implementation=self.implementation)
            hidden, k2 = self.feature_maps[j + 1](hidden, k2)
            out, W2 = ops.delta_rule(hidden, k2, v2, rate(b2), state[j + 1], reset,
                                     implementation=self.implementation)
            h = h + out if self.residual else out
            weights += [W1, W2]
        return self.project_out(h), tuple(weights)


class DeltaDeltaState(NamedTuple):
    slow: Tensor  # (B, H, 3·d_head + 1, d_dot) fast weight of the slow Delta Net
    fast: Tensor  # (B, H, d_head, d_dot) fast weight of the fast Delta Net


class DeltaDeltaNetLayer(MultiHeadLayer):
    """Delta Delta Net (RFWP Sec. 3.1; original-code.md §3): the fast net is itself a Delta Net. A slow
    Delta Net reads x; its output at each step, of size 3·d_head + 1, is the fast Delta Net's q, k, v
    and β; the fast Delta Net's output is y. State: DeltaDeltaState(slow, fast)."""

    def __init__(self, d_model: int, n_heads: int, d_head: int,
                 feature_map_config: FeatureMapConfig = FeatureMapConfig(), dropout: float = 0.0,
                 output_scale: float = 1.0, implementation: str | None = None):
        d = d_head
        super().__init__(d_model, n_heads, d_head, (d, d, 3 * d + 1, 1), dropout, output_scale)
        _no_attention_normalisation(feature_map_config, "DeltaDeltaNetLayer")
        self.implementation = implementation
        self.feature_map_slow = feature_map_config.build(d, FAST_QUERY_EPS)
        self.feature_map_fast = feature_map_config.build(d, FAST_QUERY_EPS)

    def forward(self, x: Tensor, state=None, reset: Tensor | None = None):
        q, k, v, b = self.slow_net(x, reset)
        W_slow, W_fast = (None, None) if state is None else state
        q, k = self.feature_map_slow(q, k)
        u, W_slow = ops.delta_rule(q, k, v, rate(b), W_slow, reset, implementation=self.implementation)
        d = self.d_head
        fq, fk, fv, fb = u.split((d, d, d, 1), dim=-1)
        fq, fk = self.feature_map_fast(fq, fk)
        y, W_fast = ops.delta_rule(fq, fk, fv, rate(fb), W_fast, reset, implementation=self.implementation)
        return self.project_out(y), DeltaDeltaState(W_slow, W_fast)


# ----------------------------------------------------------------------------------------------
# Recurrent slow net (RFWP Sec. 3.2)

class RecurrentDeltaNetLayer(MultiHeadLayer):
    """Recurrent Delta Net (RFWP Eqs. 15-18): the slow net also reads tanh(y_{t−1}) through slow
    recurrent weights R_q, R_k, R_v (heads, d, d) and R_β (heads, d), initialised N(0, 1/d).
    ``key_map`` is φ for q and k: "softmax" in the authors' code, or "elu_sum". State: RDNState(W, y)."""

    def __init__(self, d_model: int, n_heads: int, d_head: int, key_map: str = "softmax", dropout: float = 0.0,
                 output_scale: float = 1.0, implementation: str | None = None):
        d = d_head
        super().__init__(d_model, n_heads, d_head, (d, d, d, 1), dropout, output_scale)
        check_choice("key map", key_map, KEY_MAPS)
        self.key_map, self.implementation = key_map, implementation
        self.R_q = nn.Parameter(torch.randn(n_heads, d, d) / d ** 0.5)
        self.R_k = nn.Parameter(torch.randn(n_heads, d, d) / d ** 0.5)
        self.R_v = nn.Parameter(torch.randn(n_heads, d, d) / d ** 0.5)
        self.R_beta = nn.Parameter(torch.randn(n_heads, d) / d ** 0.5)

    def forward(self, x: Tensor, state=None, reset: Tensor | None = None):
        q, k, v, beta_logit = self.slow_net(x, reset)
        y, state = ops.recurrent_delta_net(q, k, v, beta_logit.squeeze(-1), self.R_q, self.R_k, self.R_v,
                                           self.R_beta, state, reset, self.key_map, implementation=self.implementation)
        return self.project_out(y), state


# ----------------------------------------------------------------------------------------------
# Softmax attention (the Transformer baseline)

def sinusoidal_encoding(position: Tensor, d_model: int, dtype: torch.dtype) -> Tensor:
    """Vaswani et al. (2017) Sec. 3.5: PE(p, 2i) = sin(p / 10000^{2i/d}), PE(p, 2i+1) = cos(p / 10000^{2i/d})."""
    i = torch.arange(0, d_model, 2, device=position.device, dtype=dtype)
    angle = position.unsqueeze(-1).to(dtype) / 10000 ** (i / d_model)
    return torch.stack([angle.sin(), angle.cos()], dim=-1).flatten(-2)[..., :d_model]



def segment_mask(cached_valid: Tensor, reset: Tensor | None, length: int) -> tuple[Tensor, Tensor]:
    """Which keys each query of a causal attention may see, over M cached steps and the ``length`` new ones:
    (B, length, M + length) bool, True where key j is at or before query i and in i's segment (a reset starts a
    new segment; the cached steps invalid in ``cached_valid`` (B, M) are in none); and (B, M + length), the keys
    still valid after the last step (those of each row's last segment)."""
    B, M = cached_valid.shape
    device = cached_valid.device
    segment = torch.zeros(B, length, dtype=torch.long, device=device) if reset is None else reset.cumsum(1)
    key_segment = torch.cat([torch.where(cached_valid, 0, -1), segment], dim=1)
    causal = torch.arange(M + length, device=device) <= torch.arange(M, M + length, device=device)[:, None]
    return causal & (key_segment[:, None, :] == segment[:, :, None]), key_segment == segment[:, -1:]


def check_memory(memory: int | None) -> int | None:
    if memory is not None and memory < 1:
        raise ValueError(f"memory must be a positive number of past steps or None (unlimited), got {memory}")
    return memory


class AttentionCache(NamedTuple):
    k: Tensor      # (B, H, M, d_head) keys of the last M steps
    v: Tensor      # (B, H, M, d_head) their values
    valid: Tensor  # (B, M) bool: False for steps before the last reset of that row


class SoftmaxAttention(MultiHeadLayer):
    """Causal multi-head softmax attention (Vaswani et al., 2017). Its state is the cache of past keys
    and values, so a sequence processed in pieces gives exactly the outputs of the whole; ``memory``
    limits every query to itself and the ``memory`` steps before it (and the cache to that many).
    A reset hides all earlier steps from the queries at and after it."""

    def __init__(self, d_model: int, n_heads: int, d_head: int, dropout: float = 0.0, memory: int | None = None):
        super().__init__(d_model, n_heads, d_head, (d_head, d_head, d_head), dropout)
        self.memory = check_memory(memory)

    def forward(self, x: Tensor, state: AttentionCache | None = None, reset: Tensor | None = None):
        q, k, v = self.slow_net(x, reset)
        B, H, L, d = q.shape
        if state is None and reset is None and self.memory is None:
            y = F.scaled_dot_product_attention(q, k, v, is_causal=True)
            cache = AttentionCache(k, v, torch.ones(B, L, dtype=torch.bool, device=x.device))
        else:
            if state is None:
                state = AttentionCache(k[:, :, :0], v[:, :, :0], torch.ones(B, 0, dtype=torch.bool, device=x.device))
            keys, values = torch.cat([state.k, k], dim=2), torch.cat([state.v, v], dim=2)
            mask, valid = segment_mask(state.valid, reset, L)
            if self.memory is not None:
                M = state.k.shape[2]
                i = torch.arange(M, M + L, device=x.device)[:, None]   # query positions among the keys
                mask = mask & (i - torch.arange(M + L, device=x.device) <= self.memory)
            # keys and values no query sees are overwritten: an inf or NaN in a forgotten cache would
            # otherwise reach every output through its zero attention weight (0 · inf)
            seen = mask.any(1)[:, None, :, None]
            keys, values = torch.where(seen, keys, 0.0), torch.where(seen, values, 0.0)
            y = F.scaled_dot_product_attention(q, keys, values, attn_mask=mask[:, None])
            cache = AttentionCache(keys, values, valid)
        return self.project_out(y), self._trim(cache)

    def _trim(self, cache: AttentionCache) -> AttentionCache:
        """Keep the last ``memory`` steps, minus leading steps no row can see any more; the keys and values of
        the steps a row cannot see are zeros, so that the cache does not depend on how the sequence was cut."""
        if self.memory is not None:
            cache = AttentionCache(*(t[..., -self.memory:, :] for t in cache[:2]), cache.valid[:, -self.memory:])
        first = int(cache.valid.any(0).int().argmax())
        valid = cache.valid[:, first:]
        k, v = (torch.where(valid[:, None, :, None], t[:, :, first:], 0.0) for t in cache[:2])
        return AttentionCache(k, v, valid)


def shift_rows(x: Tensor) -> Tensor:
    """Row i of x (..., L, K) moved left by L − 1 − i: out[..., i, j] = x[..., i, j + L − 1 − i] wherever that column
    exists (the rest, j > K − L + i, is what causal attention masks). Transformer-XL's shift (Dai et al. App. B),
    by padding and reshaping: no gather, whose backward is a slow scatter."""
    *batch, L, K = x.shape
    padded = F.pad(x, (1, 0)).view(*batch, K + 1, L)
    return padded[..., 1:, :].reshape(*batch, L, K)


class TransformerXLMemory(NamedTuple):
    h: Tensor      # (B, M, d_model) the layer's inputs at the last M steps
    valid: Tensor  # (B, M) bool: False for steps before the last reset of that row


class RelativeAttention(MultiHeadLayer):
    """Transformer-XL's attention (Dai et al., 2019, Secs. 3.2-3.3), the baseline of ICML Table 4. Its state is
    a memory of the layer's inputs at the last ``memory`` steps: a call's queries attend to the memory and, causally,
    to the call's own steps, with keys and values computed from both by the current weights (the trainer detaches
    the memory between segments: Transformer-XL's stop-gradient). Scores are relative (Dai et al. Sec. 3.3),

        A_ij = q_i·k_j + q_i·W_R r_{i−j} + u·k_j + v·W_R r_{i−j},

    r the sinusoidal encoding of the distance i − j, u and v learned per head, all scaled by 1/√d_head. With
    ``memory`` None every past step is kept and a sequence processed in pieces gives the outputs of the whole;
    with a finite memory the span depends on where the sequence is cut, as in Transformer-XL, segment by segment.
    A reset hides all earlier steps from the queries at and after it."""

    def __init__(self, d_model: int, n_heads: int, d_head: int, dropout: float = 0.0, memory: int | None = None):
        super().__init__(d_model, n_heads, d_head, (d_head, d_head, d_head), dropout)
        self.memory = check_memory(memory)
        self.relative = nn.Linear(d_model, n_heads * d_head, bias=False)   # W_R
        self.content_bias = nn.Parameter(torch.zeros(n_heads, 1, d_head))  # u
        self.position_bias = nn.Parameter(torch.zeros(n_heads, 1, d_head))  # v

    def forward(self, x: Tensor, state: TransformerXLMemory | None = None, reset: Tensor | None = None):
        if x.dim() != 3 or x.shape[-1] != self.d_model:
            raise ValueError(f"RelativeAttention takes x of shape (batch, length, d_model={self.d_model}), "
                             f"got {tuple(x.shape)}")
        B, L, _ = x.shape
        check_reset(reset, B, L)
        if state is None:
            state = TransformerXLMemory(x[:, :0], torch.ones(B, 0, dtype=torch.bool, device=x.device))
        M, K = state.h.shape[1], state.h.shape[1] + L
        mask, valid = segment_mask(state.valid, reset, L)
        # steps no query sees are zeroed: an inf or NaN in a forgotten memory would otherwise reach every output
        # through its zero attention weight (0 · inf)
        h = torch.where(mask.any(1)[..., None], torch.cat([state.h, x], dim=1), 0.0)
        q, k, v = self.slow_net(h, None)
        q = q[:, :, M:]
        # W_R r for the distances K − 1, …, 0: column c of (q + v)·W_R r holds distance K − 1 − c, and query i
        # (step M + i among the keys) needs distance M + i − j at key j, column L − 1 − i + j
        r = self.relative(sinusoidal_encoding(torch.arange(K - 1, -1, -1, device=x.device), self.d_model, x.dtype))
        position = (q + self.position_bias) @ r.view(K, self.n_heads, self.d_head).permute(1, 2, 0)
        scores = (shift_rows(position) / math.sqrt(self.d_head)).masked_fill(~mask[:, None], -math.inf)
        y = F.scaled_dot_product_attention(q + self.content_bias, k, v, attn_mask=scores)
        return self.project_out(y), self._remember(h, valid)

    def _remember(self, h: Tensor, valid: Tensor) -> TransformerXLMemory:
        """The last ``memory`` steps, minus leading steps no row can see any more, zeroed where a row cannot see
        them, so that the memory does not depend on how the sequence was cut."""
        if self.memory is not None:
            h, valid = h[:, -self.memory:], valid[:, -self.memory:]
        first = int(valid.any(0).int().argmax())
        valid = valid[:, first:]
        return TransformerXLMemory(torch.where(valid[..., None], h[:, first:], 0.0), valid)


# ----------------------------------------------------------------------------------------------
# The block around every layer (RFWP Sec. 3.2 and Appendix C: pre-activation residuals, layer norm)

class FeedForward(nn.Module):
    """The Transformer's position-wise feed-forward sublayer: Linear → ReLU → Linear, with dropout."""

    def __init__(self, d_model: int, d_ff: int, dropout: float = 0.0):
        super().__init__()
        self.net = nn.Sequential(nn.Linear(d_model, d_ff), nn.ReLU(), nn.Dropout(dropout),
                                 nn.Linear(d_ff, d_model), nn.Dropout(dropout))

    def forward(self, x: Tensor) -> Tensor:
        return self.net(x)


class Block(nn.Module):
    """Pre-LN residual block: x ← x + Drop(Layer(LN(x))), then x ← x + FF(LN(x)); the layer's output
    projection applies the dropout."""

    def __init__(self, layer: nn.Module, d_model: int, d_ff: int, dropout: float = 0.0):
        super().__init__()
        self.layer = layer
        self.norm_layer, self.norm_ff = nn.LayerNorm(d_model), nn.LayerNorm(d_model)
        self.ff = FeedForward(d_model, d_ff, dropout)

    def forward(self, x: Tensor, state=None, reset: Tensor | None = None):
        y, state = self.layer(self.norm_layer(x), state, reset)
        x = x + y
        return x + self.ff(self.norm_ff(x)), state
