"""The paper's configurations of the language models (RFWP Appendix A, ICML Sec. 6.3 and Appendix F), and what
the language modelling notebook runs at each scale."""
from __future__ import annotations

import math
from dataclasses import dataclass, replace

from rfwp.models import TABLE1_VERSIONS, ModelConfig
from rfwp.train import check_scale

# The adaptive input and softmax of the authors' WikiText-103 runs (Transformer-XL's, div_val 1, tied;
# original-code.md §6): shortlist of 20,000 words, tail clusters [20k, 40k), [40k, 200k), [200k, vocab).
WIKITEXT103_CUTOFFS = (20000, 40000, 200000)
WIKITEXT103_VOCABULARY = 267_735   # Transformer-XL's vocabulary of the training split, <eos> included
# RFWP Appendix A.1: WikiText-103 "small" setting; tied input/output embedding; positions for every
# model, output × 1/√d_head and Transformer-XL's initialisation as in the authors' LM code (original-code.md §3, §6).
LM_SMALL = ModelConfig(d_model=128, n_layers=16, n_heads=8, d_ff=2048, dropout=0.1, tie_embeddings=True,
                       adaptive_cutoffs=WIKITEXT103_CUTOFFS, output_scale=1 / math.sqrt(128 // 8),
                       positional_encoding=True, init_std=0.02)
# Appendix A.2: in the WikiText-103 small setting the Delta MLP keeps about the others' parameter count
# with fewer layers: version A has 8 layers of 4 fast layers, version B (Table 1) 11 layers of 2.
DELTA_MLP_LM_LAYERS = {"A": 8, "B": 11}


def lm_small_config(name: str, vocab_size: int, version: str | None = None) -> ModelConfig:
    """The configuration of model ``name`` in RFWP Table 1 (or Table 4 with ``version``): LM_SMALL, with
    the Delta MLP's depth of Appendix A.2.

    The adaptive softmax keeps only the cutoffs below ``vocab_size``: all three at WikiText-103's 267,735
    words; a smaller vocabulary (a smaller corpus) gets fewer tail clusters, and one of at most 20,000 words
    a plain tied softmax, as no cluster of the paper's would hold a word."""
    return model_config(name, LM_SMALL, vocab_size, version)


def model_config(name: str, architecture: ModelConfig, vocab_size: int, version: str | None = None) -> ModelConfig:
    """``architecture`` for model ``name`` on a vocabulary of ``vocab_size`` words: the adaptive softmax's cutoffs
    below it, the Delta MLP's depth cut as Appendix A.2 cuts 16 layers to 8 (version A) or 11 (B), and the Linear
    Transformer without the sum normalisation the others' keys get (the authors' LM code gives it none, and with
    --skip_attn_normalization no denominator either; original-code.md §3)."""
    cutoffs = tuple(c for c in architecture.adaptive_cutoffs or () if c < vocab_size) or None
    config = replace(architecture, vocab_size=vocab_size, version=version, adaptive_cutoffs=cutoffs)
    if name == "linear_transformer" and config.normalisation == "sum":
        config = replace(config, normalisation="none")
    if name == "delta_mlp":
        layers = DELTA_MLP_LM_LAYERS[version or TABLE1_VERSIONS[name]]
        config = replace(config, n_layers=max(1, round(architecture.n_layers * layers / LM_SMALL.n_layers)))
    return config


@dataclass(frozen=True)
class LanguageModellingScale:
    """What the language modelling notebook runs at one scale (every run: one seed, as in the paper)."""
    corpus: str
    architecture: ModelConfig              # every model's, before the corpus' vocabulary
    batch_size: int                        # columns of the training stream
    steps: int                             # optimiser steps of a run
    warmup_steps: int                      # linear warm-up, then cosine decay to 0 at ``steps``
    eval_every: int                        # steps between validation losses (the learning curves)
    segment_length: int = 256              # App. A.1: the backpropagation span and the evaluation window
    eval_stride: int = 1                   # the sliding window's step in the final evaluation
    eval_tokens: int | None = None         # the final evaluation reads this many tokens of valid and test
    stride_check_tokens: int | None = None  # test perplexity at stride 1 and eval_stride on this many tokens
    prompts: tuple[str, ...] = ()          # every run samples a continuation of each (in its record)
    performer_m: int = 8                   # ICML Table 2's Performers: m = 8 random features in the small setting
    # ICML Table 4 / App. F: Transformer-XL trained with a memory of one segment, evaluated at (memory, target
    # segment) lengths giving state sizes from the fast weights' up (App. F's, with the medium setting's 384 → 256)
    transformer_xl_windows: tuple[tuple[int, int], ...] = ((15, 1), (64, 64), (128, 128), (256, 256))
    lr: float = 2.5e-4
    clip: float = 0.25
    dropout: float = 0.1
    accumulate: int = 1                    # batches per optimiser step (gradient accumulation)


# RFWP App. A.1 and original-code.md §6: batch 96, about 120 epochs of WikiText-103 (500k steps), Adam 2.5e-4,
# 2,000 warm-up steps, cosine decay to 0, clipping 0.25; evaluation by sliding window with stride 1.
PAPER = LanguageModellingScale("wikitext103", LM_SMALL, batch_size=96, steps=500_000, warmup_steps=2000,
                               eval_every=4000)
SMOKE = LanguageModellingScale("shakespeare", replace(LM_SMALL, d_model=16, n_layers=1, n_heads=2, d_ff=32,
                                                      output_scale=1 / math.sqrt(8)),
                               batch_size=4, segment_length=32, steps=6, warmup_steps=2, eval_every=3,
                               eval_stride=16, eval_tokens=1024, stride_check_tokens=64, prompts=("To be",),
                               performer_m=4,
                               transformer_xl_windows=((3, 1), (32, 32)))
# The paper's adaptive softmax cutoffs, 20k/40k/200k of WikiText-103's 268k words (7.5%, 15%, 75%), scaled to
# the Shakespeare corpus' 16k: with a plain softmax the output layer costs more than 4 layers of the body.
SHAKESPEARE_CUTOFFS = (1200, 2400, 12000)
# Openings of lines from the test plays (Macbeth, Much Ado About Nothing), for sampled continuations.
SHAKESPEARE_PROMPTS = ("Is this a dagger which I see before me ,", "What , my dear Lady Disdain !",
                       "Tomorrow , and tomorrow , and tomorrow ,")
# Chosen by measurement on 2 cores (one run a core; steps/s of every run measured with the other core busy): a paper
# run would take years here. Kept: the corpus' whole text, segments of 256, batch 16 × 256 tokens, every model of
# Table 1 and ICML Tables 2 and 4, tied adaptive input and softmax, Adam with warm-up and cosine decay, clipping
# 0.25, dropout 0.1. Shrunk: 4 layers of 128 (8 heads of 16 as the paper's, feed-forward 512), the adaptive
# softmax's cutoffs scaled to the vocabulary, 600 steps (2.5 M tokens, 2.4 epochs) with 60 of warm-up and lr 1e-3
# (short training), evaluation by sliding window at stride 32 (stride 1 checked on the first 2,000 test tokens).
# Transformer-XL trains at 0.3 steps/s (about 33 minutes a run), the Delta LSTM at 0.5, the others at 0.9 to 1.6:
# the notebook's 15 runs take about 90 minutes on 2 cores.
CPU = LanguageModellingScale("shakespeare", replace(LM_SMALL, d_model=128, n_layers=4, n_heads=8, d_ff=512,
                                                    adaptive_cutoffs=SHAKESPEARE_CUTOFFS),
                             batch_size=16, steps=600, warmup_steps=60, eval_every=100, eval_stride=32,
                             eval_tokens=None, stride_check_tokens=2000, prompts=SHAKESPEARE_PROMPTS, lr=1e-3,
                             transformer_xl_windows=((7, 1), (64, 64), (128, 128), (256, 256)))


def preset(scale: str) -> LanguageModellingScale:
    check_scale(scale)
    return {"smoke": SMOKE, "cpu": CPU, "paper": PAPER}[scale]
