"""Tasks of the two papers, one package per task, with small modules by concern: its data, its model where
the task defines one, a trainer for ``rfwp.train.execute``, the presets of each scale, and its claims with
the rules that decide them.

  associative_retrieval  ICML 2021 Sec. 6.1: synthetic key-value retrieval (capacity, update rules)
  algorithmic            what code execution and ListOps share: Table 2's six models, their optimisers,
                         the metrics, selection on validation, the tables
  code_execution         RFWP Sec. 4.2: code execution data (correct and the authors' semantics), the
                         algorithmic tasks' architecture, Tables 2 and 5, claim C4
  listops                RFWP Sec. 4.3: sequential ListOps data, Table 2, claim C5
  language_modelling     RFWP Sec. 4.1, ICML Sec. 6.3: corpora (Shakespeare, WikiText-103), truncated and
                         full-context training, sliding-window evaluation, Table 1, ICML Tables 2 and 4, claim C3
  atari                  RFWP Sec. 4.4: environments (ale-py), V-trace, the IMPALA agent with fast weight cores
  translation            ICML Sec. 6.2: the English–Spanish Bible and WMT14 En-De, joint subwords, BLEU
"""
