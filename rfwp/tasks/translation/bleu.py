"""BLEU (Papineni et al. 2002) as sacreBLEU computes it (Post 2018), which ICML 2021 Sec. 6.2 cites for Table 1:
corpus-level, on detokenised text (the ``Subwords.decode`` output against the untokenised references), with
sacreBLEU's defaults: its 13a tokenisation (WMT's standard), case kept, exponential smoothing, one reference.
The signature string names these settings and sacreBLEU's version, so a score can be compared with another.
"""
from __future__ import annotations

from typing import NamedTuple, Sequence

from sacrebleu.metrics import BLEU


class Bleu(NamedTuple):
    score: float       # 0 to 100
    signature: str     # e.g. "nrefs:1|case:mixed|eff:no|tok:13a|smooth:exp|version:2.6.0"


def bleu(hypotheses: Sequence[str], references: Sequence[str]) -> Bleu:
    """The corpus BLEU of ``hypotheses[i]`` against ``references[i]``, and sacreBLEU's signature."""
    if len(hypotheses) != len(references):
        raise ValueError(f"BLEU needs one reference per hypothesis; got {len(hypotheses)} hypotheses and "
                         f"{len(references)} references")
    metric = BLEU()
    score = metric.corpus_score(list(hypotheses), [list(references)])
    return Bleu(score.score, str(metric.get_signature()))
