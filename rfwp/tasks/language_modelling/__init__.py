"""Language modelling, RFWP Sec. 4.1 and Appendix A.

Modules: ``corpus`` (WikiText-103 from a directory, the embedded Shakespeare corpus), ``presets`` (the paper's
model configurations), ``trainer`` (truncated and full-context training, the paper's evaluation),
``evaluation`` (sliding-window and full-context perplexity), ``claims`` (claim C3).
"""
from rfwp.tasks.language_modelling.presets import LM_SMALL, lm_small_config

__all__ = ["LM_SMALL", "lm_small_config"]
