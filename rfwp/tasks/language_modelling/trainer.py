"""Language modelling runs (RFWP Sec. 4.1 and App. A.1; ICML Sec. 6.3): a model trained on a corpus' token stream
in segments, with context truncation or with the full context, and evaluated as the paper does.

    record = run("delta_rnn", "cpu", seed=0, full_context=True)
    record.final["test_perplexity"]     # of the trained model, by sliding window or with the full context

Training (App. A.1): the training stream is cut into ``batch_size`` columns read in segments of
``segment_length`` tokens. With context truncation every segment starts from a zero state; with the full
context each starts from the state the previous segment of its column ended in, detached (truncated
backpropagation through time), for every layer and every kind of state. During training the validation
stream is read the same way in ``eval_batch_size`` columns, a cheap loss for the learning curves. After the
last step the trained model is evaluated once on valid and test with batch 1: a sliding window of
``segment_length`` tokens (truncated models) or the state carried through the whole split (full context);
Transformer-XL (ICML Table 4) also on test at each (memory, target segment) length of ``memory_windows``.

Under torchrun (``python -m rfwp.tasks.language_modelling``) every process reads its share of the columns.
"""
from __future__ import annotations

from contextlib import contextmanager
from dataclasses import dataclass, replace
from functools import partial
from pathlib import Path

import torch

from rfwp.layers import RelativeAttention
from rfwp.models import DELTA_MLP_FAST_LAYERS, MODELS, TABLE1_VERSIONS, ModelConfig, build_model
from rfwp.ops.reference import DELTA_LSTM_VERSIONS, DELTA_RNN_VERSIONS
from rfwp.tasks.language_modelling import corpus as corpora
from rfwp.tasks.language_modelling.evaluation import full_context_perplexity, sliding_window_perplexity
from rfwp.tasks.language_modelling.generation import continuation
from rfwp.tasks.language_modelling.presets import LanguageModellingScale, model_config, preset
from rfwp.train import ContiguousSegments, OptimiserConfig, Schedule, SequenceTrainer, distributed, execute


@dataclass(frozen=True)
class LanguageModellingConfig:
    """One run: what is hashed into the run record."""
    corpus: str                      # a name of ``corpus.CORPORA``
    model: str
    model_config: ModelConfig        # with the corpus' vocabulary size
    optimiser: OptimiserConfig
    batch_size: int                  # columns of the training stream (global, over every process)
    segment_length: int = 256        # App. A.1: training segments, and the sliding window of the evaluation
    full_context: bool = False       # carry the state across segments (Table 1's "+ full context" rows)
    eval_batch_size: int = 16        # columns of the validation stream read during training
    eval_stride: int = 1             # the sliding window's step in the final evaluation (App. A.1: 1)
    eval_tokens: int | None = None   # every evaluation reads the first this many tokens of valid and test
    memory_windows: tuple[tuple[int, int], ...] = ()   # Transformer-XL: (memory, target) lengths also evaluated
    stride_check_tokens: int | None = None   # also test perplexity at stride 1 and eval_stride on this many tokens
    prompts: tuple[str, ...] = ()            # sampled continuations of these, in the record

    def __post_init__(self):
        if self.segment_length < 1 or self.eval_stride < 1:
            raise ValueError(f"segment_length and eval_stride must be ≥ 1, got {self.segment_length} and "
                             f"{self.eval_stride}")
        if self.model == "transformer_xl" and not self.full_context:
            raise ValueError("Transformer-XL reads each segment with the memory of the last: use full_context=True")


class LanguageModellingTrainer(SequenceTrainer):
    """``SequenceTrainer`` on a corpus' token stream, with the paper's evaluation once training ends."""

    def __init__(self, config: LanguageModellingConfig, corpus: corpora.Corpus):
        self.run_config, self.corpus = config, corpus
        device = distributed.setup()
        columns = dict(rank=distributed.rank(), world_size=distributed.world_size())
        super().__init__(build_model(config.model, config.model_config).to(device), config.optimiser,
                         ContiguousSegments(corpus.train, config.batch_size, config.segment_length, **columns),
                         {"valid": ContiguousSegments(corpus.valid[:config.eval_tokens], config.eval_batch_size,
                                                      config.segment_length)},
                         carry_state=config.full_context, score_targets=True)

    def final_evaluate(self) -> dict[str, float]:
        """Valid and test perplexity of the trained model with batch 1 (App. A.1); for Transformer-XL also test
        perplexity at each (memory, target segment) length of ``memory_windows`` (ICML App. F); for a truncated
        model test perplexity at stride 1 and at ``eval_stride`` on the first ``stride_check_tokens`` tokens;
        and a sampled continuation of each of ``prompts``."""
        c, out = self.run_config, {}
        for split in ("valid", "test"):
            ids = getattr(self.corpus, split)[:c.eval_tokens]
            if c.full_context:
                result = full_context_perplexity(self.model, ids, segment=c.segment_length)
            else:
                result = sliding_window_perplexity(self.model, ids, window=c.segment_length, stride=c.eval_stride)
            out.update({f"{split}_perplexity": result.perplexity, f"{split}_nll": result.nll})
        ids = self.corpus.test[:c.eval_tokens]
        for memory, target in c.memory_windows:
            with memory_length(self.model, memory):
                result = full_context_perplexity(self.model, ids, segment=target)
            out[f"test_perplexity_memory{memory}_target{target}"] = result.perplexity
        if c.stride_check_tokens and not c.full_context:
            ids = self.corpus.test[:c.stride_check_tokens]
            for stride in sorted({1, c.eval_stride}):
                result = sliding_window_perplexity(self.model, ids, window=c.segment_length, stride=stride)
                out[f"test_perplexity_stride{stride}_first{c.stride_check_tokens}"] = result.perplexity
        for i, prompt in enumerate(c.prompts):
            out[f"sample_{i}"] = continuation(self.model, self.corpus, prompt, seed=i)
        return out


@contextmanager
def memory_length(model: torch.nn.Module, memory: int):
    """Within the block, every Transformer-XL layer of ``model`` keeps a memory of ``memory`` steps."""
    layers = [m for m in model.modules() if isinstance(m, RelativeAttention)]
    saved = [layer.memory for layer in layers]
    for layer in layers:
        layer.memory = memory
    try:
        yield
    finally:
        for layer, before in zip(layers, saved):
            layer.memory = before


def make_trainer(config: LanguageModellingConfig, seed: int, data_dir: str | Path | None = None,
                 cache_dir: Path | None = None) -> LanguageModellingTrainer:
    """The trainer of ``config`` (``seed`` is set by ``execute``: the stream itself is not shuffled);
    ``data_dir`` holds WikiText-103 when ``config.corpus`` is "wikitext103"."""
    del seed
    return LanguageModellingTrainer(config, corpora.load(config.corpus, data_dir, cache_dir))


# RFWP Table 4's versions of each model
VERSIONS = {"delta_rnn": DELTA_RNN_VERSIONS, "delta_lstm": DELTA_LSTM_VERSIONS,
            "delta_mlp": tuple(DELTA_MLP_FAST_LAYERS)}


@dataclass(frozen=True)
class Variant:
    """What a run changes from its model's Table 1 configuration: the full context (Table 1's last rows, ICML
    Table 4), another feature map (ICML Tables 2 and 5), another version (RFWP Table 4), positions or attention
    normalisation (ICML Table 3). The defaults are Table 1's, and a variant equal to them is Table 1's run."""
    full_context: bool = False
    feature_map: str = "elu"                  # "favor": the Performer, "dpfp"
    m: int | None = None                      # FAVOR+ random features; None: the scale's performer_m
    nu: int = 1                               # DPFP's ν
    version: str | None = None                # Delta RNN A/B, Delta LSTM A-D, Delta MLP A/B; None: Table 1's
    positional_encoding: bool | None = None   # None: absolute positions unless the state is carried
    attention_normalisation: bool = False     # ICML Eqs. 26-28

    def resolved(self, model: str, scale: LanguageModellingScale) -> Variant:
        """The same run with every choice that equals Table 1's written as the default, so that both name (and
        hash) one run: e.g. version "B" of the Delta RNN is Table 1's Delta RNN."""
        return replace(self, m=None if self.m in (None, scale.performer_m) or self.feature_map != "favor" else self.m,
                       nu=self.nu if self.feature_map == "dpfp" else 1,
                       version=None if self.version == TABLE1_VERSIONS.get(model) else self.version,
                       positional_encoding=None if self.positional_encoding in (None, not self.full_context)
                       else self.positional_encoding)

    @property
    def suffix(self) -> str:
        """The run name's suffix (of a resolved variant): "" for Table 1's, e.g. "_A", "_favor_m16", "_dpfp_nu1",
        "_no_positions", "_attention_normalisation", "_full_context"."""
        parts = [self.version] if self.version else []
        if self.feature_map != "elu":
            parts.append(self.feature_map + (f"_m{self.m}" if self.m else "") +
                         (f"_nu{self.nu}" if self.feature_map == "dpfp" else ""))
        if self.positional_encoding is not None:
            parts.append("positions" if self.positional_encoding else "no_positions")
        parts += ["attention_normalisation"] * self.attention_normalisation + ["full_context"] * self.full_context
        return "".join(f"_{part}" for part in parts)


def run_name(corpus: str, model: str, variant: Variant = Variant()) -> str:
    """e.g. "language_modelling/shakespeare/delta_rnn_full_context" or ".../delta_net_favor"."""
    return f"language_modelling/{corpus}/{model}{variant.suffix}"


def config(model: str, scale: str, vocab_size: int, variant: Variant = Variant()) -> LanguageModellingConfig:
    """The run of ``model`` at ``scale``: the scale's architecture for the model, changed by ``variant``. Without
    positional encoding when the state is carried (the authors' full-context runs use ``--no_pos``; Transformer-XL's
    positions are relative); the Performer with the scale's m unless the variant sets one."""
    if model not in MODELS or model in ("lstm", "feedforward"):
        raise ValueError(f"unknown language model {model!r}; choose one of "
                         f"{tuple(m for m in MODELS if m not in ('lstm', 'feedforward'))}")
    p = preset(scale)
    v = variant.resolved(model, p)
    if v.version is not None and v.version not in VERSIONS.get(model, ()):
        raise ValueError(f"{model} has no version {v.version!r}; versions (RFWP Table 4): "
                         + "; ".join(f"{m} {', '.join(vs)}" for m, vs in VERSIONS.items()))
    positions = v.positional_encoding if v.positional_encoding is not None else not v.full_context
    architecture = replace(p.architecture, dropout=p.dropout, feature_map=v.feature_map, m=v.m or p.performer_m,
                           nu=v.nu, positional_encoding=positions,
                           normalisation="attention" if v.attention_normalisation else p.architecture.normalisation)
    if model == "transformer_xl":
        architecture = replace(architecture, memory=p.segment_length)
    optimiser = OptimiserConfig(lr=p.lr, warmup_steps=p.warmup_steps, decay="cosine", total_steps=p.steps,
                                clip=p.clip, accumulate=p.accumulate)
    return LanguageModellingConfig(p.corpus, model, model_config(model, architecture, vocab_size, v.version),
                                   optimiser, p.batch_size, p.segment_length, v.full_context,
                                   eval_stride=p.eval_stride, eval_tokens=p.eval_tokens,
                                   memory_windows=p.transformer_xl_windows if model == "transformer_xl" else (),
                                   stride_check_tokens=p.stride_check_tokens, prompts=p.prompts)


def run(model: str, scale: str, seed: int = 0, full_context: bool = False, feature_map: str = "elu",
        m: int | None = None, nu: int = 1, version: str | None = None, positional_encoding: bool | None = None,
        attention_normalisation: bool = False, data_dir: str | Path | None = None,
        corpus_cache: str | Path | None = None, **execute_kwargs):
    """One run of ``model`` at ``scale`` changed by the ``Variant`` of the keyword arguments between them, through
    ``rfwp.train.execute``; ``execute_kwargs``: results_dir, cache_dir, progress, train."""
    p = preset(scale)
    variant = Variant(full_context, feature_map, m, nu, version, positional_encoding,
                      attention_normalisation).resolved(model, p)
    corpus = corpora.load(p.corpus, data_dir, corpus_cache)
    schedule = Schedule(steps=p.steps, eval_every=p.eval_every, monitor="valid_loss", mode="min")
    make = partial(make_trainer, data_dir=data_dir, cache_dir=corpus_cache)
    return execute(run_name(p.corpus, model, variant), config(model, scale, len(corpus.vocabulary), variant), make,
                   schedule, seed=seed, scale=scale, **execute_kwargs)


def parameter_count(model: str, config: ModelConfig) -> int:
    """Parameters of ``model`` at ``config``, counted without allocating them."""
    with torch.device("meta"):
        return sum(p.numel() for p in build_model(model, config).parameters())
