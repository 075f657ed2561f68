"""The claim the Atari notebook decides, and its rule, declared before the runs.

Every comparison of Sec. 4.4 and App. C presumes agents that have learnt to play. At a scale far below the paper's
200 M steps that is the first thing to establish: C6 asks whether at least one trained agent plays clearly better
than chance.
"""
from __future__ import annotations

import math

import pandas as pd

C6 = ("RFWP Sec. 4.4 (the premise of its comparisons): the IMPALA agents learn to play; at least one trained agent's "
      "mean test score exceeds the uniformly random policy's on the same game beyond the test's noise")
# An agent (one run: game, core, seed) beats the random policy when its final test score exceeds the random
# policy's by more than MARGIN standard deviations of per-repetition mean scores, the larger of the agent's and
# the random policy's (each test: repetitions × episodes games, evaluation.py). With 3 repetitions that is about
# 2.4 standard errors of the difference of the two means even when both spreads are equal.
MARGIN = 2.0


def check_c6(tests: pd.DataFrame, baselines: pd.DataFrame) -> tuple[bool | None, str]:
    """C6 on ``sweeps.scores`` (its ``final`` tests) and ``sweeps.random_baselines``: holds if some agent beats
    the random policy (the rule above). An agent is comparable when neither its test nor the random policy's on
    its game had games stopped by the safety cap (their scores are no final scores) and both stds are defined
    (2 repetitions or more). Fails if every agent is comparable and none beats it; else not decidable (None)."""
    if "final" in tests:
        tests = tests[tests.final]
    if tests.empty:
        return None, "not decidable: no runs"
    random = baselines.set_index("game")
    lines, beaten, incomparable = [], [], []
    for row in tests.itertuples():
        base = random.loc[row.game]
        name = f"{row.game}/{row.core}/seed {row.seed}"
        if row.capped or base.capped or math.isnan(row.std) or math.isnan(base["std"]):
            incomparable.append(name)
            continue
        margin = MARGIN * max(row.std, base["std"])
        if row.score - base.score > margin:
            beaten.append(name)
        lines.append(f"{name} {row.score:.4g} ± {row.std:.3g} against random {base.score:.4g} ± {base['std']:.3g} "
                     f"(needs > {base.score + margin:.4g})")
    parts = [f"final test scores at {int(tests.frames.max()):,} frames at most",
             f"beat the random policy: {', '.join(beaten) or 'none'}", "; ".join(lines)]
    if incomparable:
        parts.append(f"not comparable (capped test games or fewer than 2 repetitions): {', '.join(incomparable)}")
    evidence = ". ".join(p for p in parts if p)
    if beaten:
        return True, evidence
    return (None, "not decidable: " + evidence) if incomparable else (False, evidence)
