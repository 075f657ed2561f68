"""Language modelling, RFWP Sec. 4.1 and Appendix A.

Modules: ``presets`` (the paper's model configurations).
"""
from rfwp.tasks.language_modelling.presets import LM_SMALL, lm_small_config

__all__ = ["LM_SMALL", "lm_small_config"]
