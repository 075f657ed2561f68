"""The paper's configurations of the language models (RFWP Appendix A)."""
import math
from dataclasses import replace

from rfwp.models import TABLE1_VERSIONS, ModelConfig

# The adaptive input and softmax of the authors' WikiText-103 runs (Transformer-XL's, div_val 1, tied;
# original-code.md §6): shortlist of 20,000 words, tail clusters [20k, 40k), [40k, 200k), [200k, vocab).
WIKITEXT103_CUTOFFS = (20000, 40000, 200000)
# RFWP Appendix A.1: WikiText-103 "small" setting; tied input/output embedding; positions for every
# model and output × 1/√d_head as in the authors' LM code (original-code.md §3, §6).
LM_SMALL = ModelConfig(d_model=128, n_layers=16, n_heads=8, d_ff=2048, dropout=0.1, tie_embeddings=True,
                       adaptive_cutoffs=WIKITEXT103_CUTOFFS, output_scale=1 / math.sqrt(128 // 8),
                       positional_encoding=True)
# Appendix A.2: in the WikiText-103 small setting the Delta MLP keeps about the others' parameter count
# with fewer layers: version A has 8 layers of 4 fast layers, version B (Table 1) 11 layers of 2.
DELTA_MLP_LM_LAYERS = {"A": 8, "B": 11}


def lm_small_config(name: str, vocab_size: int, version: str | None = None) -> ModelConfig:
    """The configuration of model ``name`` in RFWP Table 1 (or Table 4 with ``version``): LM_SMALL, with
    the Delta MLP's depth of Appendix A.2.

    The adaptive softmax keeps only the cutoffs below ``vocab_size``: all three at WikiText-103's 267,735
    words; a smaller vocabulary (a smaller corpus) gets fewer tail clusters, and one of at most 20,000 words
    a plain tied softmax, as no cluster of the paper's would hold a word."""
    cutoffs = tuple(c for c in LM_SMALL.adaptive_cutoffs if c < vocab_size) or None
    config = replace(LM_SMALL, vocab_size=vocab_size, version=version, adaptive_cutoffs=cutoffs)
    if name == "delta_mlp":
        config = replace(config, n_layers=DELTA_MLP_LM_LAYERS[version or TABLE1_VERSIONS[name]])
    return config
