"""Code execution and sequential ListOps, RFWP Sec. 4.2-4.3 (one architecture for both tasks).

Modules: ``presets`` (the paper's model configuration).
"""
from rfwp.tasks.code_execution.presets import CODE_EXECUTION

__all__ = ["CODE_EXECUTION"]
