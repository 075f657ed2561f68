"""Fast Weight Programmers: Schlag, Irie, Schmidhuber (ICML 2021) and Irie, Schlag, Csordás,
Schmidhuber (NeurIPS 2021). Models by the paper's names:

    from rfwp import build_model, MODELS, CODE_EXECUTION
    model = build_model("delta_rnn", dataclasses.replace(CODE_EXECUTION, vocab_size=24, n_outputs=25))

Update rules with their fast paths are in ``rfwp.ops``, feature maps in ``rfwp.feature_maps``,
layers in ``rfwp.layers``.
"""
from .models import (ATARI_LARGE, ATARI_SMALL, CODE_EXECUTION, LISTOPS, LM_SMALL, MODELS, ModelConfig,
                     build_model)

__all__ = ["build_model", "ModelConfig", "MODELS", "CODE_EXECUTION", "LISTOPS", "LM_SMALL", "ATARI_SMALL",
           "ATARI_LARGE"]
