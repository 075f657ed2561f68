"""Fast Weight Programmers: Schlag, Irie, Schmidhuber (ICML 2021) and Irie, Schlag, Csordás,
Schmidhuber (NeurIPS 2021). Models by the paper's names:

    from rfwp import build_model, MODELS, CODE_EXECUTION
    model = build_model("delta_rnn", dataclasses.replace(CODE_EXECUTION, vocab_size=24, n_outputs=25))

Update rules with their fast paths are in ``rfwp.ops``, feature maps in ``rfwp.feature_maps``, layers in
``rfwp.layers``, architectures in ``rfwp.models``; the training layer every task shares is ``rfwp.train``,
the tasks with the paper's configurations are under ``rfwp.tasks``.
"""
from rfwp.models import MODELS, ModelConfig, build_model
from rfwp.tasks.atari.presets import ATARI_LARGE, ATARI_SMALL
from rfwp.tasks.code_execution.presets import CODE_EXECUTION
from rfwp.tasks.language_modelling.presets import LM_SMALL

__all__ = ["build_model", "ModelConfig", "MODELS", "CODE_EXECUTION", "LM_SMALL", "ATARI_SMALL", "ATARI_LARGE"]
