"""Sequential ListOps, RFWP Sec. 4.3 and App. B.3: lists over MIN, MAX and FIRST of an exact nesting depth,
read once left to right, the value predicted at the last token. The models are code execution's
(``rfwp.tasks.code_execution.presets``).

Modules: ``data`` (the generator and its command ``python -m rfwp.tasks.listops.data``, statistics beside
the paper's, loading a written dataset into tensors; not imported here, so that running it as a command does
not import it twice), ``presets`` (each scale's runs), ``trainer`` (the dataset of a run, its metric, one run),
``sweeps`` (the runs of Table 2), ``claims`` (C5 and its rule).
"""
