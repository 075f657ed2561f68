"""Whole models by the paper's names and their configuration (the paper's configurations are in the tasks,
``rfwp.tasks.<task>.presets``, and importable from ``rfwp``).

    model = build_model("delta_rnn", dataclasses.replace(rfwp.CODE_EXECUTION, vocab_size=24, n_outputs=25))
    logits, state = model(tokens)                    # tokens (batch, length)
    logits, state = model(more_tokens, state=state)  # continues exactly where the first call stopped

Every model has forward(x, state=None, reset=None) -> (logits, state): x is token ids (batch, length)
when the config has ``vocab_size``, float features (batch, length, d_input) when it has ``d_input``;
``reset`` (batch, length) bool zeroes the state before the steps where it is True. With ``adaptive_cutoffs``
(the adaptive softmax of the language models) the logits are normalised log-probabilities, so
F.cross_entropy and log_softmax give the same values as on any other logits.
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from typing import NamedTuple

import torch
from torch import Tensor, nn
from torch.nn import functional as F

from .feature_maps import FEATURE_MAPS, NORMALISATIONS
from .layers import (KEY_MAPS, Block, DeltaDeltaNetLayer, DeltaLSTMLayer, DeltaMLPLayer, DeltaNetLayer,
                     DeltaRNNLayer, FeatureMapConfig, FeedForward, LinearTransformerLayer, RecurrentDeltaNetLayer,
                     RelativeAttention, SoftmaxAttention, check_reset, sinusoidal_encoding)


@dataclass(frozen=True)
class ModelConfig:
    d_model: int = 128
    n_layers: int = 2
    n_heads: int = 4
    d_head: int | None = None            # None: d_model // n_heads
    d_ff: int = 512
    dropout: float = 0.1
    # inputs and outputs: token ids (vocab_size) or float features (d_input)
    vocab_size: int | None = None
    d_input: int | None = None
    n_outputs: int | None = None         # None: vocab_size (language modelling)
    tie_embeddings: bool = False         # output weights = input embedding (needs n_outputs = vocab_size)
    # Adaptive input (Baevski & Auli 2019) and adaptive softmax (Grave et al. 2017) as in Transformer-XL
    # (RFWP App. A.1, original-code.md §6): words [0, c_1) are the shortlist, [c_i, c_{i+1}) tail cluster i,
    # the last ending at vocab_size. Only Transformer-XL's div_val 1 (the paper's): every cluster has d_model
    # dims and no projection, so the adaptive input is the plain embedding. None: a plain softmax.
    adaptive_cutoffs: tuple[int, ...] | None = None
    # φ for queries and keys of the fast weight layers (not the RDN: see key_map)
    feature_map: str = "elu"
    nu: int = 1                          # DPFP ν
    m: int = 64                          # FAVOR+ random features
    normalisation: str = "sum"           # "sum" (ICML Eq. 29), "attention" (Eqs. 26-28), "none"
    output_scale: float = 1.0            # 1/√d_head in the authors' LM code, 1 elsewhere
    version: str | None = None           # Delta RNN A/B, Delta LSTM A-D, Delta MLP A/B; None: Table 1's
    recurrent_key_map: str = "softmax"   # keys of the Delta RNN/LSTM recurrent fast weights
    key_map: str = "softmax"             # RDN's φ (Eqs. 15-18)
    positional_encoding: bool | None = None  # sinusoidal, in SequenceModel; None: Transformer only (RFWP App. B.1)
    memory: int | None = None            # past steps a Transformer's query sees, a Transformer-XL's memory; None: all
    lstm_hidden: int = 256               # the LSTM baseline (Tables 2-3: one layer of 256)
    lstm_layers: int = 1
    lstm_embedding: int | None = None    # LSTM input size; None: d_model
    implementation: str | None = None    # rfwp.ops path: None (fastest available), "reference", ...
    # Transformer-XL's initialisation, the authors' LM code's (original-code.md §6): Linear and embedding weights
    # N(0, init_std²), LayerNorm weights N(1, init_std²), biases 0, and the input embedding × √d_model (so that
    # a tied output layer starts near the uniform distribution). None: PyTorch's defaults, no scaling.
    init_std: float | None = None

    def __post_init__(self):
        for field, value, choices in (("feature_map", self.feature_map, FEATURE_MAPS),
                                      ("normalisation", self.normalisation, NORMALISATIONS),
                                      ("recurrent_key_map", self.recurrent_key_map, KEY_MAPS),
                                      ("key_map", self.key_map, KEY_MAPS)):
            if value not in choices:
                raise ValueError(f"unknown {field} {value!r}; choose one of {choices}")
        if self.vocab_size is not None and self.d_input is not None:
            raise ValueError("set either vocab_size (token inputs) or d_input (float features), not both")
        if self.d_head is None and self.d_model % self.n_heads:
            raise ValueError(f"d_model={self.d_model} is not divisible by n_heads={self.n_heads}; set d_head")
        if self.adaptive_cutoffs is not None and not _valid_cutoffs(self.adaptive_cutoffs, self.vocab_size):
            raise ValueError(f"adaptive_cutoffs must be a non-empty tuple of strictly increasing positive integers "
                             f"below vocab_size={self.vocab_size} (every cluster holds a word); got "
                             f"{self.adaptive_cutoffs!r}. Use None for a plain softmax")

    @property
    def head_size(self) -> int:
        return self.d_head or self.d_model // self.n_heads

    @property
    def outputs(self) -> int:
        return self.n_outputs or self.vocab_size

    @property
    def feature_map_config(self) -> FeatureMapConfig:
        return FeatureMapConfig(self.feature_map, self.nu, self.m, self.normalisation)

    def check_io(self) -> None:
        """Building a model needs its input and output sizes, which the named paper configs leave open."""
        if self.vocab_size is None and self.d_input is None:
            raise ValueError("the config has neither vocab_size nor d_input; set one, e.g. "
                             "dataclasses.replace(CODE_EXECUTION, vocab_size=24, n_outputs=25)")
        if self.outputs is None:
            raise ValueError("the config has no n_outputs; set it, e.g. dataclasses.replace(config, n_outputs=10)")
        if self.tie_embeddings and (self.vocab_size is None or self.outputs != self.vocab_size):
            raise ValueError("tie_embeddings needs token inputs with n_outputs equal to vocab_size")
        if self.adaptive_cutoffs and (self.vocab_size is None or self.outputs != self.vocab_size):
            raise ValueError("adaptive_cutoffs needs token inputs with n_outputs equal to vocab_size")


def _valid_cutoffs(cutoffs, vocab_size: int | None) -> bool:
    """0 < c_1 < ... < c_n < vocab_size: the shortlist and every tail cluster hold at least one word."""
    if not (isinstance(cutoffs, tuple) and cutoffs and all(isinstance(c, int) for c in cutoffs)):
        return False
    bounds = (0, *cutoffs, math.inf if vocab_size is None else vocab_size)
    return all(a < b for a, b in zip(bounds, bounds[1:]))


# ----------------------------------------------------------------------------------------------
# Models

class InputLayer(nn.Module):
    """Token ids (batch, length) through an embedding, or float features (batch, length, d_input) through a Linear."""

    def __init__(self, config: ModelConfig, d_out: int):
        super().__init__()
        self.tokens = config.vocab_size is not None
        self.d_input = config.d_input
        self.embed = nn.Embedding(config.vocab_size, d_out) if self.tokens else nn.Linear(config.d_input, d_out)

    def forward(self, x: Tensor) -> Tensor:
        if self.tokens and (x.dim() != 2 or x.is_floating_point()):
            raise ValueError(f"this model reads token ids, a long tensor (batch, length); got {x.dtype} of shape "
                             f"{tuple(x.shape)}. For float features build it with d_input instead of vocab_size")
        if not self.tokens and (x.dim() != 3 or x.shape[-1] != self.d_input or not x.is_floating_point()):
            raise ValueError(f"this model reads float features (batch, length, d_input={self.d_input}); got "
                             f"{x.dtype} of shape {tuple(x.shape)}. Add the feature axis (x.unsqueeze(-1) if "
                             f"d_input is 1), or build the model with vocab_size for token ids")
        return self.embed(x)


class AdaptiveSoftmax(nn.Module):
    """Adaptive softmax (Grave et al. 2017) with Transformer-XL's div_val 1: every cluster scores its words
    by the d_model-dim word vectors u_w (``words``, tied to the input embedding in SequenceModel), no projection.
    The head is a softmax over the shortlist's words and one logit v_i·h + c_i per tail cluster i; a word of the
    shortlist has log p(w | h) = log head(w), a word of tail cluster i (words [a_i, b_i))
        log p(w | h) = log head(i) + log softmax_{w' ∈ [a_i, b_i)}(u_{w'}·h + b_{w'})_w.
    Parameters beyond a plain softmax: the tail clusters' head logits (``clusters``)."""

    def __init__(self, d_model: int, vocab_size: int, cutoffs: tuple[int, ...]):
        super().__init__()
        self.shortlist = cutoffs[0]
        self.register_buffer("cutoffs", torch.tensor(cutoffs), persistent=False)
        self.tails = tuple(zip(cutoffs, (*cutoffs[1:], vocab_size)))  # [a_i, b_i) of each tail cluster
        self.words = nn.Linear(d_model, vocab_size)
        self.clusters = nn.Linear(d_model, len(cutoffs))

    def forward(self, h: Tensor) -> Tensor:
        """log p(w | h) of every word (..., vocab_size): normalised over the whole vocabulary."""
        logits = self.words(h)
        head = torch.cat([logits[..., :self.shortlist], self.clusters(h)], dim=-1).log_softmax(-1)
        tails = [head[..., self.shortlist + i, None] + logits[..., a:b].log_softmax(-1)
                 for i, (a, b) in enumerate(self.tails)]
        return torch.cat([head[..., :self.shortlist], *tails], dim=-1)

    def nll(self, h: Tensor, targets: Tensor) -> Tensor:
        """−log p(targets | h) (...,), without the (..., vocab_size) log-probabilities: the head at every position,
        each tail cluster's softmax only where the target is in that cluster (the adaptive softmax's saving)."""
        shortlist = F.linear(h, self.words.weight[:self.shortlist], self.words.bias[:self.shortlist])
        head = torch.cat([shortlist, self.clusters(h)], dim=-1).log_softmax(-1)
        cluster = torch.bucketize(targets.contiguous(), self.cutoffs, right=True)  # 0: shortlist, i ≥ 1: tail i
        head_index = torch.where(cluster == 0, targets, self.shortlist + cluster - 1)
        log_p = head.gather(-1, head_index.unsqueeze(-1)).squeeze(-1)
        for i, (a, b) in enumerate(self.tails, 1):
            at = (cluster == i).nonzero(as_tuple=True)
            tail = F.linear(h[at], self.words.weight[a:b], self.words.bias[a:b]).log_softmax(-1)
            log_p = log_p.index_put(at, tail.gather(-1, (targets[at] - a).unsqueeze(-1)).squeeze(-1), accumulate=True)
        return -log_p


def segment_positions(start: Tensor, reset: Tensor | None, length: int) -> Tensor:
    """Position of each step within its segment (batch, length): start + t, or t − (last reset ≤ t)."""
    t = torch.arange(length, device=start.device)
    if reset is None:
        return start[:, None] + t
    last = torch.where(reset, t, -1).cummax(dim=1).values
    return torch.where(last >= 0, t - last, start[:, None] + t)


def make_layer(name: str, c: ModelConfig) -> nn.Module:
    """The sequence-mixing layer of the model ``name``."""
    heads = dict(d_model=c.d_model, n_heads=c.n_heads, d_head=c.head_size, dropout=c.dropout)
    if name == "transformer":
        return SoftmaxAttention(**heads, memory=c.memory)
    if name == "transformer_xl":
        return RelativeAttention(**heads, memory=c.memory)
    heads.update(output_scale=c.output_scale, implementation=c.implementation)
    if name == "recurrent_delta_net":
        return RecurrentDeltaNetLayer(**heads, key_map=c.key_map)
    heads["feature_map_config"] = c.feature_map_config
    version = c.version or TABLE1_VERSIONS.get(name)
    if name == "linear_transformer":
        return LinearTransformerLayer(**heads)
    if name == "delta_net":
        return DeltaNetLayer(**heads)
    if name == "delta_delta_net":
        return DeltaDeltaNetLayer(**heads)
    if name == "delta_rnn":
        return DeltaRNNLayer(**heads, version=version, recurrent_key_map=c.recurrent_key_map)
    if name == "delta_lstm":
        return DeltaLSTMLayer(**heads, version=version, recurrent_key_map=c.recurrent_key_map)
    if name == "delta_mlp":
        if version not in DELTA_MLP_FAST_LAYERS:
            raise ValueError(f"Delta MLP version must be 'A' (4 fast layers) or 'B' (2), Table 4; got {version!r}")
        return DeltaMLPLayer(**heads, fast_layers=DELTA_MLP_FAST_LAYERS[version])
    raise ValueError(f"{name!r} has no sequence-mixing layer; choose one of {SEQUENCE_MODELS}")


class SequenceState(NamedTuple):
    layers: list      # one state per block, each as its layer returns it
    position: Tensor  # (batch,) steps since the last reset: the positional encoding's offset


class SequenceModel(nn.Module):
    """Input → optional sinusoidal positions → N pre-LN blocks (layer ``name`` + feed-forward) → LN → Linear,
    or → AdaptiveSoftmax with ``adaptive_cutoffs`` (then forward returns log-probabilities, and ``nll`` scores
    targets without the (batch, length, vocab) tensor). State: SequenceState(layers, position)."""

    def __init__(self, config: ModelConfig, name: str):
        super().__init__()
        c = config
        self.positional_encoding = c.positional_encoding if c.positional_encoding is not None else name == "transformer"
        self.input = InputLayer(c, c.d_model)
        self.drop = nn.Dropout(c.dropout)
        self.blocks = nn.ModuleList(Block(make_layer(name, c), c.d_model, c.d_ff, c.dropout) for _ in range(c.n_layers))
        self.norm = nn.LayerNorm(c.d_model)
        if c.adaptive_cutoffs:
            self.head = AdaptiveSoftmax(c.d_model, c.vocab_size, c.adaptive_cutoffs)
            words = self.head.words
        else:
            self.head = words = nn.Linear(c.d_model, c.outputs)
        if c.tie_embeddings:
            words.weight = self.input.embed.weight  # one Parameter: the output word vectors are the embedding
        self.embedding_scale = 1.0
        if c.init_std is not None:
            self.embedding_scale = math.sqrt(c.d_model)
            for module in self.modules():
                if isinstance(module, (nn.Linear, nn.Embedding)):
                    nn.init.normal_(module.weight, 0.0, c.init_std)
                if isinstance(module, nn.LayerNorm):
                    nn.init.normal_(module.weight, 1.0, c.init_std)
                if isinstance(module, (nn.Linear, nn.LayerNorm)) and module.bias is not None:
                    nn.init.zeros_(module.bias)

    def forward(self, x: Tensor, state: SequenceState | None = None, reset: Tensor | None = None,
                targets: Tensor | None = None):
        """The logits and the state; with ``targets`` (batch, length), −log p(targets) in place of the logits
        (``nll``: through forward, so that DistributedDataParallel, which wraps forward, trains it too)."""
        h, state = self.features(x, state, reset)
        if targets is None:
            return self.head(h), state
        return self._nll(h, targets), state

    def nll(self, x: Tensor, targets: Tensor, state: SequenceState | None = None, reset: Tensor | None = None):
        """−log p(targets) (batch, length) and the state; with the adaptive softmax without computing the
        log-probabilities of every word (what cross-entropy on forward's logits gives, at less cost)."""
        return self(x, state, reset, targets)

    def _nll(self, h: Tensor, targets: Tensor) -> Tensor:
        if targets.shape != h.shape[:2]:
            raise ValueError(f"targets must have the shape (batch, length) = {tuple(h.shape[:2])} of the inputs; "
                             f"got {tuple(targets.shape)}")
        if isinstance(self.head, AdaptiveSoftmax):
            return self.head.nll(h, targets)
        logits = self.head(h)
        return F.cross_entropy(logits.flatten(0, 1), targets.flatten(), reduction="none").view_as(targets)

    def features(self, x: Tensor, state: SequenceState | None = None, reset: Tensor | None = None):
        """The head's input (batch, length, d_model): the last block's output after the final layer norm."""
        h = self.input(x) * self.embedding_scale
        B, L, d = h.shape
        check_reset(reset, B, L)
        if state is None:
            state = SequenceState([None] * len(self.blocks), torch.zeros(B, dtype=torch.long, device=h.device))
        position = segment_positions(state.position, reset, L)
        if self.positional_encoding:
            h = h + sinusoidal_encoding(position, d, h.dtype)
        h = self.drop(h)
        layer_states = []
        for block, layer_state in zip(self.blocks, state.layers, strict=True):
            h, layer_state = block(h, layer_state, reset)
            layer_states.append(layer_state)
        return self.norm(h), SequenceState(layer_states, position[:, -1] + 1)


class LSTMModel(nn.Module):
    """LSTM baseline (RFWP Tables 2-3): input → nn.LSTM → Linear. State (h, c) as in nn.LSTM."""

    def __init__(self, config: ModelConfig):
        super().__init__()
        c = config
        d_in = c.lstm_embedding or c.d_model
        self.input = InputLayer(c, d_in)
        self.drop = nn.Dropout(c.dropout)
        self.lstm = nn.LSTM(d_in, c.lstm_hidden, c.lstm_layers, batch_first=True,
                            dropout=c.dropout if c.lstm_layers > 1 else 0.0)
        self.head = nn.Linear(c.lstm_hidden, c.outputs)

    def forward(self, x: Tensor, state: tuple[Tensor, Tensor] | None = None, reset: Tensor | None = None):
        h = self.drop(self.input(x))
        B, L, _ = h.shape
        check_reset(reset, B, L)
        if reset is None:
            out, state = self.lstm(h, state)
        else:
            # nn.LSTM cannot zero its state mid-sequence: run it piece by piece, cut wherever a row resets
            cuts = sorted({0, L, *torch.nonzero(reset.any(0)).flatten().tolist()})
            outs = []
            for a, b in zip(cuts[:-1], cuts[1:]):
                if state is not None:
                    # overwrite, not multiply by 0: an inf or NaN state must not survive a reset
                    zeroed = reset[:, a][None, :, None]
                    state = tuple(torch.where(zeroed, torch.zeros_like(s), s) for s in state)
                out, state = self.lstm(h[:, a:b], state)
                outs.append(out)
            out = torch.cat(outs, dim=1)
        return self.head(self.drop(out)), state


class FeedForwardModel(nn.Module):
    """Feed-forward baseline: each step alone, no mixing across time (the Atari baseline of RFWP
    Appendix C): input → N pre-LN residual feed-forward blocks → LN → Linear. State: always None."""

    def __init__(self, config: ModelConfig):
        super().__init__()
        c = config
        self.input = InputLayer(c, c.d_model)
        self.drop = nn.Dropout(c.dropout)
        self.blocks = nn.ModuleList(nn.Sequential(nn.LayerNorm(c.d_model), FeedForward(c.d_model, c.d_ff, c.dropout))
                                    for _ in range(c.n_layers))
        self.norm = nn.LayerNorm(c.d_model)
        self.head = nn.Linear(c.d_model, c.outputs)

    def forward(self, x: Tensor, state: None = None, reset: Tensor | None = None):
        h = self.drop(self.input(x))
        check_reset(reset, h.shape[0], h.shape[1])
        for block in self.blocks:
            h = h + block(h)
        return self.head(self.norm(h)), None


# ----------------------------------------------------------------------------------------------
# Registry

@dataclass(frozen=True)
class ModelInfo:
    name: str                    # as in RFWP Table 1
    slow_net: str                # Table 1 columns: slow net, update rule, fast net
    update: str
    fast_net: str
    full_name: str               # Appendix D nomenclature: "slow-net/update-rule fast fast-net"
    table1_params: float | None  # Table 1 "#Prms" (millions, WikiText-103 small setting)


MODELS = {
    "transformer": ModelInfo("Transformer", "-", "-", "-", "-", 44.0),
    "linear_transformer": ModelInfo("Linear Transformer", "Feedforward", "sum", "Linear",
                                    "Feedforward/Sum fast Linear Net", 44.0),
    "delta_net": ModelInfo("Delta Net", "Feedforward", "delta", "Linear",
                           "Feedforward/Delta fast Linear Net", 44.0),
    "delta_mlp": ModelInfo("Delta MLP", "Feedforward", "delta", "Deep MLP",
                           "Feedforward/Delta fast MLP", 44.3),
    "delta_delta_net": ModelInfo("Delta Delta Net", "Feedforward", "delta", "Delta Net",
                                 "Feedforward/Delta fast Delta Net", 44.6),
    "delta_rnn": ModelInfo("Delta RNN", "Feedforward", "delta", "RNN",
                           "Feedforward/Delta fast RNN", 44.6),
    "delta_lstm": ModelInfo("Delta LSTM", "Feedforward", "delta", "LSTM",
                            "Feedforward/Delta fast LSTM", 47.3),
    "recurrent_delta_net": ModelInfo("RDN", "Recurrent", "delta", "Linear",
                                     "Recurrent/Delta fast Linear Net", 44.1),
    "transformer_xl": ModelInfo("Transformer-XL", "-", "-", "-", "-", None),   # ICML Table 4's baseline
    "lstm": ModelInfo("LSTM", "-", "-", "-", "-", None),
    "feedforward": ModelInfo("Feedforward", "-", "-", "-", "-", None),
}
SEQUENCE_MODELS = tuple(name for name in MODELS if name not in ("lstm", "feedforward"))
TABLE1_MODELS = tuple(name for name, info in MODELS.items() if info.table1_params is not None)

# The versions reported in Table 1 (Table 4 ablates the others), and the Delta MLP's fast depth.
TABLE1_VERSIONS = {"delta_rnn": "B", "delta_lstm": "D", "delta_mlp": "B"}
DELTA_MLP_FAST_LAYERS = {"A": 4, "B": 2}


def build_model(name: str, config: ModelConfig) -> nn.Module:
    """The model ``name`` (a key of MODELS: RFWP Table 1's rows and the LSTM/feed-forward baselines)."""
    if name not in MODELS:
        raise ValueError(f"unknown model {name!r}; choose one of {tuple(MODELS)}")
    config.check_io()
    if config.adaptive_cutoffs and name not in SEQUENCE_MODELS:
        raise ValueError(f"adaptive_cutoffs is implemented for the sequence models {SEQUENCE_MODELS}, not {name!r}")
    if name == "lstm":
        return LSTMModel(config)
    if name == "feedforward":
        return FeedForwardModel(config)
    return SequenceModel(config, name)


def detach_state(state):
    """The state with every tensor detached (truncated backpropagation through time across calls)."""
    if isinstance(state, Tensor):
        return state.detach()
    if isinstance(state, tuple) and hasattr(state, "_fields"):
        return type(state)(*(detach_state(s) for s in state))
    if isinstance(state, (list, tuple)):
        return type(state)(detach_state(s) for s in state)
    return state
