"""The encoder-decoder Transformer of the machine translation experiments, ICML 2021 Sec. 6.2 and App. E.

The model is Vaswani et al. (2017)'s "big" Transformer as fairseq's ``transformer_vaswani_wmt_en_de_big`` builds it
(Ott et al. 2018, 2019): 6 encoder and 6 decoder layers, d_model 1024, 16 heads of d_key 64, feed-forward 4096,
dropout 0.3 (on the embeddings and on every sublayer's output; none on attention weights or inside the feed-forward,
fairseq's defaults), one embedding matrix shared by source, target and output (``--share-all-embeddings``, the 32 K
joint vocabulary of App. E), embeddings scaled by √d_model plus sinusoidal positions, and post-LN residual blocks
(fairseq's ``encoder_normalize_before`` and ``decoder_normalize_before`` are False for this architecture), so no final
layer norm. The paper changes only the attention, in every sublayer: ``TranslationConfig.attention`` names it,

  "softmax"    the standard Transformer (Table 1's "Standard");
  "linear"     φ = ELU + 1 (Katharopoulos et al. 2020; ICML Eq. 30), d_dot = d_key;
  "performer"  FAVOR+ with m random features (Choromanski et al. 2021; ICML Eqs. 31-32), d_dot = 2m;
  "dpfp"       DPFP-ν (ICML Eq. 37), d_dot = 2·d_key·ν;

and the linear ones are read with Katharopoulos et al.'s attention normalisation, the sum update rule of ICML Eqs.
17-19 (``FeatureMapConfig``'s ``normalisation="attention"``, not Eq. 29's "sum" of the Delta Net experiments):

    y_i = Σ_j v_j φ(k_j)ᵀ φ(q_i) / Σ_j φ(k_j)ᵀ φ(q_i).

Encoder self-attention and encoder-decoder attention are non-causal: every query reads the fast weight
W = Σ_j v_j ⊗ φ(k_j) and z = Σ_j φ(k_j) over the unpadded keys. The decoder's causal self-attention goes through
``rfwp.layers.normalised_sum_rule`` (``rfwp.ops.sum_rule``), so its state (W, z) is carried from one decoding step to
the next. A softmax decoder carries a cache of its keys and values instead. A whole sentence at once (training) is
summed in the attention form (φ(Q) φ(K)ᵀ) V where that is cheaper, as it is for sentences shorter than the fast
weight is wide: the same numbers (ICML Sec. 3), and the same state for a continuation.

Tensors are (batch, length, d_model) between modules and (batch, heads, length, d_key) inside attention; padding
masks are (batch, length) bool, True at real tokens. Token ids are those of ``subwords`` (``PAD``, ``BOS``, ``EOS``):
a source sentence ends with EOS, the decoder reads BOS y_1 … y_n and is trained to predict y_1 … y_n EOS, with
batches padded on the right.
"""
from __future__ import annotations

import math
from dataclasses import dataclass, replace
from typing import NamedTuple, Sequence

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from rfwp.feature_maps import FeatureMap, check_choice
from rfwp.layers import FastWeightState, FeatureMapConfig, normalised_sum_rule, sinusoidal_encoding
from rfwp.tasks.translation.subwords import PAD

ATTENTIONS = ("softmax", "linear", "performer", "dpfp")
# The library's name of each linear attention's φ (rfwp.feature_maps.FEATURE_MAPS).
FEATURE_MAP_NAMES = {"linear": "elu", "performer": "favor", "dpfp": "dpfp"}
# ε in the denominator of the attention normalisation, that of rfwp.layers.normalised_sum_rule.
EPS = 1e-6


@dataclass(frozen=True)
class TranslationConfig:
    """The encoder-decoder's sizes and its attention. ``m`` (FAVOR+'s random features) is read only by
    "performer" and ``nu`` (DPFP's ν) only by "dpfp"; ICML Table 6 gives the values of Table 1, and the defaults
    are its first column (d_dot 256 at d_key 64)."""
    vocabulary: int = 32_000
    d_model: int = 1024
    n_heads: int = 16
    d_ff: int = 4096
    encoder_layers: int = 6
    decoder_layers: int = 6
    dropout: float = 0.3
    attention: str = "softmax"
    m: int = 128
    nu: int = 2

    def __post_init__(self):
        check_choice("attention", self.attention, ATTENTIONS)
        if self.d_model % self.n_heads:
            raise ValueError(f"d_model={self.d_model} must be a multiple of n_heads={self.n_heads}")

    @property
    def d_key(self) -> int:
        return self.d_model // self.n_heads

    @property
    def d_dot(self) -> int:
        return d_dot(self.attention, self.d_key, self.m, self.nu)

    def feature_map(self) -> FeatureMap | None:
        """A new φ for one attention sublayer (each has its own FAVOR+ draw), or None for softmax attention."""
        return build_feature_map(self.attention, self.d_key, self.m, self.nu)


# Transformer "big" (Vaswani et al. 2017 Table 3; fairseq's transformer_vaswani_wmt_en_de_big), ICML App. E.
TRANSFORMER_BIG = TranslationConfig()


def build_feature_map(attention: str, d_key: int, m: int, nu: int) -> FeatureMap | None:
    """φ of a linear ``attention`` for keys of size d_key (None for softmax), with attention normalisation: the
    library applies none to φ itself and ``read`` and ``normalised_sum_rule`` divide by z · φ(q)."""
    check_choice("attention", attention, ATTENTIONS)
    if attention == "softmax":
        return None
    return FeatureMapConfig(FEATURE_MAP_NAMES[attention], nu=nu, m=m, normalisation="attention").build(d_key)


def d_dot(attention: str, d_key: int, m: int | None = None, nu: int | None = None) -> int:
    """The dimension of the space where keys meet queries (ICML Sec. 5, Table 6): d_key for softmax attention (the
    "Standard" column of Table 1), else the size of the output of a φ built for ``attention``."""
    check_choice("attention", attention, ATTENTIONS)
    if attention == "softmax":
        return d_key
    if attention == "performer" and m is None:
        raise ValueError("d_dot of the performer needs m, its number of random features")
    if attention == "dpfp" and nu is None:
        raise ValueError("d_dot of DPFP needs nu")
    phi = build_feature_map(attention, d_key, 1 if m is None else m, 1 if nu is None else nu)
    return phi.eval()(torch.zeros(1, d_key)).shape[-1]


def parameter_count(config: TranslationConfig) -> int:
    """The number of trained parameters of a Transformer of ``config``, built on the meta device (no memory)."""
    with torch.device("meta"):
        model = Transformer(config)
    return sum(p.numel() for p in model.parameters())


# ----------------------------------------------------------------------------------------------
# Attention

class Context(NamedTuple):
    """A sequence attended to: the encoder's output (or a layer's input) and its padding mask."""
    h: Tensor     # (B, S, d_model)
    mask: Tensor  # (B, S) bool, True at real tokens


class KeyValues(NamedTuple):
    """What a softmax attention reads: keys and values per head, and the padding mask (None: no padding)."""
    k: Tensor                # (B, H, S, d_key)
    v: Tensor                # (B, H, S, d_key)
    mask: Tensor | None      # (B, S) bool


def fast_weight(k: Tensor, v: Tensor, mask: Tensor | None = None) -> FastWeightState:
    """W = Σ_j v_j ⊗ φ(k_j) (B, H, d_key, d_dot) and z = Σ_j φ(k_j) (B, H, d_dot) over the real tokens (all where
    ``mask`` is None; ICML Eqs. 17-18 summed over the whole sequence); ``k`` is φ(k)."""
    if mask is not None:
        k = k * mask[:, None, :, None]
    return FastWeightState(torch.einsum("bhjv,bhjd->bhvd", v, k), k.sum(2))


def read(memory: FastWeightState, q: Tensor) -> Tensor:
    """y_i = W φ(q_i) / (z · φ(q_i) + ε) (ICML Eq. 19) for every query (B, H, L, d_dot) → (B, H, L, d_key)."""
    W, z = memory
    return torch.einsum("bhvd,bhld->bhlv", W, q) / (torch.einsum("bhd,bhld->bhl", z, q).unsqueeze(-1) + EPS)


def attention_form(q: Tensor, k: Tensor, v: Tensor, mask: Tensor | None = None, causal: bool = False) -> Tensor:
    """ICML Eq. 19 in attention form: y_i = Σ_j (φ(k_j)·φ(q_i)) v_j / (Σ_j φ(k_j)·φ(q_i) + ε) over the real keys (and
    j ≤ i where ``causal``), the numbers of reading the fast weight (``read(fast_weight(k, v, mask), q)``, or the
    sum rule's y_t = W_t φ(q_t) / (z_t·φ(q_t) + ε) where causal); ``q`` and ``k`` are φ(q) and φ(k)."""
    scores = q @ k.transpose(-1, -2)
    if mask is not None:
        scores = scores * mask[:, None, None, :]
    if causal:
        scores = scores.tril()
    return (scores @ v) / (scores.sum(-1, keepdim=True) + EPS)


def attention_form_is_cheaper(queries: int, keys: int, d_dot: int, d_value: int) -> bool:
    """(φ(Q) φ(K)ᵀ) V takes queries·keys·(d_dot + d_value) multiply-adds, building W and reading it
    (queries + keys)·d_dot·d_value."""
    return queries * keys * (d_dot + d_value) < (queries + keys) * d_dot * d_value


def softmax_read(memory: KeyValues, q: Tensor) -> Tensor:
    """softmax(q kᵀ / √d_key) v over the real keys (Vaswani et al. 2017 Eq. 1)."""
    mask = None if memory.mask is None else memory.mask[:, None, None, :]
    return F.scaled_dot_product_attention(q, memory.k, memory.v, attn_mask=mask)


class Attention(nn.Module):
    """Non-causal multi-head attention (encoder self-attention, encoder-decoder attention): queries from x, keys
    and values from a Context. The projections have biases, as fairseq's MultiheadAttention.

    ``remember`` computes once what every query reads (for linear attention the fast weight W and key sum z, for
    softmax the keys and values); ``forward`` reads either such a memory or, in a full forward, a Context, in which
    case φ maps queries and keys in one call (one FAVOR+ draw for both in training, ICML Sec. 5.3).

    FAVOR+ estimates exp(q·k) (ICML Eq. 31), so queries and keys are scaled by d_key^(−1/4) before it, which makes
    it estimate softmax attention's exp(q·k/√d_key) (Choromanski et al. 2021); ELU + 1 and DPFP read them as they are.
    """

    def __init__(self, config: TranslationConfig):
        super().__init__()
        d = config.d_model
        self.d_model, self.n_heads, self.d_key = d, config.n_heads, config.d_key
        self.q, self.k, self.v, self.out = (nn.Linear(d, d) for _ in range(4))
        self.feature_map = config.feature_map()
        self.scale = config.d_key ** -0.25 if config.attention == "performer" else 1.0

    def heads(self, x: Tensor, projection: nn.Linear) -> Tensor:
        """x (B, L, d_model) → its projection split into heads, (B, H, L, d_key)."""
        if x.dim() != 3 or x.shape[-1] != self.d_model:
            raise ValueError(f"{type(self).__name__} takes inputs of shape (batch, length, d_model={self.d_model}), "
                             f"got {tuple(x.shape)}")
        B, L, _ = x.shape
        return projection(x).view(B, L, self.n_heads, self.d_key).transpose(1, 2)

    def merge(self, y: Tensor) -> Tensor:
        """(B, H, L, d_key) → the output projection of the concatenated heads, (B, L, d_model)."""
        B, H, L, d = y.shape
        return self.out(y.transpose(1, 2).reshape(B, L, H * d))

    def queries(self, x: Tensor) -> Tensor:
        return self.heads(x, self.q) * self.scale

    def keys_values(self, h: Tensor) -> tuple[Tensor, Tensor]:
        return self.heads(h, self.k) * self.scale, self.heads(h, self.v)

    def remember(self, context: Context) -> FastWeightState | KeyValues:
        """What every query of this sublayer reads from ``context``, computed once per source sentence for decoding
        (in eval mode, where FAVOR+ keeps one draw of its random features)."""
        k, v = self.keys_values(context.h)
        if self.feature_map is None:
            return KeyValues(k, v, context.mask)
        return fast_weight(self.feature_map(k), v, context.mask)

    def forward(self, x: Tensor, memory: Context | FastWeightState | KeyValues) -> Tensor:
        q = self.queries(x)
        if isinstance(memory, Context):
            _check_batch(x, memory.h, "the queries", "the sequence attended to")
            k, v = self.keys_values(memory.h)
            if self.feature_map is None:
                memory = KeyValues(k, v, memory.mask)
            else:
                q, k = self.feature_map(q, k)
                if attention_form_is_cheaper(q.shape[2], k.shape[2], q.shape[-1], v.shape[-1]):
                    return self.merge(attention_form(q, k, v, memory.mask))
                memory = fast_weight(k, v, memory.mask)
        else:
            _check_batch(x, memory[0], "the queries", "the remembered sequence")
            if self.feature_map is not None:
                q = self.feature_map(q)
        y = softmax_read(memory, q) if self.feature_map is None else read(memory, q)
        return self.merge(y)


class CausalSelfAttention(Attention):
    """The decoder's masked self-attention; ``forward(x, state) → (y, state)`` continues a sequence from ``state``
    (None: its start), so the target fed in pieces gives the outputs of the whole. Linear attention carries
    FastWeightState(W, z), the sum rule's fast weight and key sum (ICML Eqs. 17-19), O(1) per step; softmax
    attention carries KeyValues, the keys and values of all earlier steps."""

    def forward(self, x: Tensor, state: FastWeightState | KeyValues | None = None):
        q = self.queries(x)
        k, v = self.keys_values(x)
        if state is not None:
            _check_batch(x, state[0], "the inputs", "the carried state")
        if self.feature_map is not None:
            q, k = self.feature_map(q, k)
            L = x.shape[1]
            if state is None and attention_form_is_cheaper(L, L, q.shape[-1], v.shape[-1]):
                return self.merge(attention_form(q, k, v, causal=True)), fast_weight(k, v)
            y, state = normalised_sum_rule(q, k, v, state, eps=EPS)
            return self.merge(y), state
        if state is None:
            y = F.scaled_dot_product_attention(q, k, v, is_causal=True)
            return self.merge(y), KeyValues(k, v, None)
        M, L = state.k.shape[2], x.shape[1]
        k, v = torch.cat([state.k, k], dim=2), torch.cat([state.v, v], dim=2)
        causal = torch.ones(L, M + L, dtype=torch.bool, device=x.device).tril(M)   # new step i sees keys ≤ M + i
        y = F.scaled_dot_product_attention(q, k, v, attn_mask=causal)
        return self.merge(y), KeyValues(k, v, None)


def _check_batch(x: Tensor, other: Tensor, x_name: str, other_name: str) -> None:
    if x.shape[0] != other.shape[0]:
        raise ValueError(f"{x_name} have batch size {x.shape[0]} but {other_name} has {other.shape[0]}")


# ----------------------------------------------------------------------------------------------
# Post-LN layers (Vaswani et al. 2017 Sec. 5.4; fairseq's normalize_before=False): x ← LN(x + Drop(Sublayer(x)))

class FeedForward(nn.Sequential):
    """FFN(x) = W_2 ReLU(W_1 x + b_1) + b_2 (Vaswani et al. 2017 Eq. 2), no dropout inside (fairseq's default)."""

    def __init__(self, config: TranslationConfig):
        super().__init__(nn.Linear(config.d_model, config.d_ff), nn.ReLU(), nn.Linear(config.d_ff, config.d_model))


class EncoderLayer(nn.Module):
    def __init__(self, config: TranslationConfig):
        super().__init__()
        self.attention, self.ff = Attention(config), FeedForward(config)
        self.norm_attention, self.norm_ff = nn.LayerNorm(config.d_model), nn.LayerNorm(config.d_model)
        self.drop = nn.Dropout(config.dropout)

    def forward(self, x: Tensor, mask: Tensor) -> Tensor:
        x = self.norm_attention(x + self.drop(self.attention(x, Context(x, mask))))
        return self.norm_ff(x + self.drop(self.ff(x)))


class DecoderLayer(nn.Module):
    def __init__(self, config: TranslationConfig):
        super().__init__()
        self.self_attention, self.cross_attention = CausalSelfAttention(config), Attention(config)
        self.ff = FeedForward(config)
        self.norm_self, self.norm_cross, self.norm_ff = (nn.LayerNorm(config.d_model) for _ in range(3))
        self.drop = nn.Dropout(config.dropout)

    def forward(self, x: Tensor, memory: Context | FastWeightState | KeyValues, state=None):
        y, state = self.self_attention(x, state)
        x = self.norm_self(x + self.drop(y))
        x = self.norm_cross(x + self.drop(self.cross_attention(x, memory)))
        return self.norm_ff(x + self.drop(self.ff(x))), state


class DecoderState(NamedTuple):
    """The decoder after some target steps: each layer's self-attention state and the next step's position."""
    layers: tuple
    position: int


# ----------------------------------------------------------------------------------------------
# The model

class Transformer(nn.Module):
    """The encoder-decoder of ICML App. E. ``forward(source, target_input)`` gives the logits of every target step
    (training); decoding uses ``encode`` once, ``remember`` once, then ``decode`` step by step with its state."""

    def __init__(self, config: TranslationConfig = TRANSFORMER_BIG):
        super().__init__()
        self.config = config
        # one matrix for source, target and output (Press and Wolf 2017; fairseq's --share-all-embeddings)
        self.embedding = nn.Embedding(config.vocabulary, config.d_model, padding_idx=PAD)
        self.encoder = nn.ModuleList(EncoderLayer(config) for _ in range(config.encoder_layers))
        self.decoder = nn.ModuleList(DecoderLayer(config) for _ in range(config.decoder_layers))
        self.drop = nn.Dropout(config.dropout)
        self.reset_parameters()

    def reset_parameters(self) -> None:
        """fairseq's initialisation: embeddings N(0, 1/d_model) with a zero padding row, linear weights
        Xavier-uniform with zero biases, layer norms at (1, 0)."""
        nn.init.normal_(self.embedding.weight, std=self.config.d_model ** -0.5)
        with torch.no_grad():
            self.embedding.weight[PAD].zero_()
        for module in self.modules():
            if isinstance(module, nn.Linear):
                nn.init.xavier_uniform_(module.weight)
                nn.init.zeros_(module.bias)

    def embed(self, tokens: Tensor, start: int = 0) -> Tensor:
        """Drop(√d_model · E[tokens] + PE(position)), positions from ``start`` (Vaswani et al. 2017 Secs. 3.4-3.5)."""
        position = torch.arange(start, start + tokens.shape[1], device=tokens.device)
        x = self.embedding(tokens) * math.sqrt(self.config.d_model)
        return self.drop(x + sinusoidal_encoding(position, self.config.d_model, x.dtype))

    def encode(self, source: Tensor) -> Context:
        """source (B, S) token ids, right-padded with PAD → the encoder's output and the source padding mask."""
        self._check_tokens("source", source)
        mask = source != PAD
        x = self.embed(source)
        for layer in self.encoder:
            x = layer(x, mask)
        return Context(x, mask)

    def remember(self, encoded: Context) -> tuple:
        """Each decoder layer's precomputed encoder-decoder attention memory, for ``decode``."""
        return tuple(layer.cross_attention.remember(encoded) for layer in self.decoder)

    def decode(self, target_input: Tensor, memory: Sequence, state: DecoderState | None = None):
        """target_input (B, T) token ids continuing the target from ``state`` (None: its start, which is BOS), and
        ``memory`` one per decoder layer (``remember``'s, or the encoder's Context) → logits (B, T, vocabulary) of
        the next tokens and the state after the last step."""
        self._check_tokens("target_input", target_input)
        if len(memory) != len(self.decoder):
            raise ValueError(f"memory must have one entry per decoder layer ({len(self.decoder)}), got {len(memory)}")
        if state is None:
            state = DecoderState((None,) * len(self.decoder), 0)
        elif len(state.layers) != len(self.decoder):
            raise ValueError(f"state must be the DecoderState of a previous call, with {len(self.decoder)} layers, "
                             f"got {len(state.layers)}")
        layers, position = state
        x = self.embed(target_input, position)
        carried = []
        for layer, layer_memory, layer_state in zip(self.decoder, memory, layers):
            x, layer_state = layer(x, layer_memory, layer_state)
            carried.append(layer_state)
        logits = x @ self.embedding.weight.T   # the output layer is the embedding, transposed
        return logits, DecoderState(tuple(carried), position + target_input.shape[1])

    def forward(self, source: Tensor, target_input: Tensor) -> Tensor:
        """The logits (B, T, vocabulary) of every target token given the source and the target before it."""
        self._check_tokens("source", source)
        self._check_tokens("target_input", target_input)
        if target_input.shape[0] != source.shape[0]:
            raise ValueError(f"source has batch size {source.shape[0]} but target_input has {target_input.shape[0]}")
        return self.decode(target_input, (self.encode(source),) * len(self.decoder))[0]

    def _check_tokens(self, name: str, tokens: Tensor) -> None:
        if tokens.dim() != 2 or tokens.dtype != torch.long:
            raise ValueError(f"{name} must be a (batch, length) tensor of token ids (torch.long), got shape "
                             f"{tuple(tokens.shape)} and dtype {tokens.dtype}")


# ----------------------------------------------------------------------------------------------
# Training loss

def label_smoothed_cross_entropy(logits: Tensor, target: Tensor, epsilon: float = 0.1, reduction: str = "mean",
                                 pad: int = PAD) -> Tensor:
    """Cross-entropy against the label-smoothed target distribution (Szegedy et al. 2016; Vaswani et al. 2017
    Sec. 5.4, ε = 0.1), as fairseq's ``label_smoothed_cross_entropy``: 1 − ε on the reference token and ε/(V − 1) on
    each of the V − 1 others, so per token

        loss = −(1 − ε) log p(y) − ε/(V − 1) Σ_{v ≠ y} log p(v).

    Positions where ``target`` is ``pad`` count for nothing; ``reduction`` "mean" averages over the other tokens,
    "sum" adds them up. logits (B, T, V), target (B, T)."""
    check_choice("reduction", reduction, ("mean", "sum"))
    if logits.dim() != 3 or tuple(target.shape) != tuple(logits.shape[:2]):
        raise ValueError(f"logits must be (batch, length, vocabulary) and target (batch, length) with the same batch "
                         f"and length, got {tuple(logits.shape)} and {tuple(target.shape)}")
    log_p = F.log_softmax(logits.to(torch.promote_types(logits.dtype, torch.float32)), dim=-1)
    V = log_p.shape[-1]
    reference = log_p.gather(-1, target.unsqueeze(-1)).squeeze(-1)
    others = log_p.sum(-1) - reference
    loss = -(1 - epsilon) * reference - epsilon / (V - 1) * others
    real = target != pad
    loss = torch.where(real, loss, 0.0).sum()
    return loss / real.sum().clamp(min=1) if reduction == "mean" else loss


def main() -> None:
    """Print the paper's configuration and its parameter count at the 32 K joint vocabulary."""
    for attention in ATTENTIONS:
        config = replace(TRANSFORMER_BIG, attention=attention)
        print(f"{attention:>9}: d_dot {config.d_dot:4d}, {parameter_count(config):,} parameters")
    print(TRANSFORMER_BIG)


if __name__ == "__main__":
    main()
