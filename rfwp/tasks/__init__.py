"""Tasks of the two papers, one module per task: its data, its model where the task defines one,
a trainer for ``rfwp.runs.execute``, the paper's scale presets and the checks of its claims.

  associative_retrieval  ICML 2021 Sec. 6.1: synthetic key-value retrieval (capacity, update rules)
"""
