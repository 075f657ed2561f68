"""Atari with IMPALA, RFWP Sec. 4.4.

Modules: ``presets`` (the paper's model configurations), ``environment`` (batched Atari games with DeepMind's
preprocessing, on ale-py), ``vtrace`` (V-trace targets and the IMPALA loss), ``agent`` (IMPALA's network with
an LSTM, feed-forward or fast weight core), ``actors``, ``learner``, ``trainer`` and ``evaluation`` (IMPALA's
training and the paper's test protocol), ``figures`` (Figures 1-12 and the text's counts from the paper's scores),
``sweeps`` (our runs as tables) and ``claims`` (C6); only the presets are imported here, so that they do not need
ale-py.
"""
from rfwp.tasks.atari.presets import ATARI_LARGE, ATARI_SMALL

__all__ = ["ATARI_LARGE", "ATARI_SMALL"]
