"""Code execution and sequential ListOps, RFWP Sec. 4.2-4.3 (one architecture for both tasks).

Modules: ``presets`` (the paper's model configuration), ``data`` (the programs of App. B.1, their command
``python -m rfwp.tasks.code_execution.data``, statistics beside the paper's, loading into tensors; not imported
here, so that running it as a command does not import it twice).
"""
from rfwp.tasks.code_execution.presets import CODE_EXECUTION

__all__ = ["CODE_EXECUTION"]
