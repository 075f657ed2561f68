"""Code execution and sequential ListOps, RFWP Sec. 4.2-4.3 (one architecture for both tasks).

Modules: ``data`` (the programs of App. B.1, their command ``python -m rfwp.tasks.code_execution.data``,
statistics beside the paper's, loading into tensors; not imported here, so that running it as a command does
not import it twice), ``presets`` (the paper's configuration and each scale's runs), ``trainer`` (the dataset
of a run, its metrics, one run), ``sweeps`` (the runs of Tables 2 and 5), ``claims`` (C4 and its rule). What
code execution shares with ListOps is ``rfwp.tasks.algorithmic``.
"""
from rfwp.tasks.code_execution.presets import CODE_EXECUTION

__all__ = ["CODE_EXECUTION"]
