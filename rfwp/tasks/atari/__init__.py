"""Atari with IMPALA, RFWP Sec. 4.4.

Modules: ``presets`` (the paper's model configurations).
"""
from rfwp.tasks.atari.presets import ATARI_LARGE, ATARI_SMALL

__all__ = ["ATARI_LARGE", "ATARI_SMALL"]
